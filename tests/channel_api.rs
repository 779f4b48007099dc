//! CONFORMANCE "asyncore", the channel's socket methods: create_socket, bind, set_reuse_addr,
//! and asyncore.py's send/recv rules, over IPv4, IPv6 and Unix (and every backend where a loop
//! is involved).

mod support;

use sockloop::{Backend, Channel, Domain, Type};
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;
use support::*;

// CPython test_create_socket: create_socket(family) makes a non-blocking socket of that family
// and type that child processes do not inherit (close-on-exec).
#[test]
fn create_socket() {
    for family in Family::ALL {
        for ty in [Type::STREAM, Type::DGRAM] {
            let ch = Channel::create_socket(family.domain(), ty).unwrap();
            let s = ch.socket().unwrap();
            assert_eq!(s.domain().unwrap(), family.domain());
            assert_eq!(s.r#type().unwrap(), ty);
            assert!(s.nonblocking().unwrap(), "{family:?} {ty:?} is non-blocking");
            let flags = rustix::io::fcntl_getfd(s).unwrap();
            assert!(flags.contains(rustix::io::FdFlags::CLOEXEC), "{family:?} {ty:?} is close-on-exec");
            assert!(!ch.connected() && !ch.accepting() && !ch.connecting());
        }
    }
    // And for real: a child process does not see the descriptor.
    let ch = Channel::create_socket(Domain::IPV4, Type::STREAM).unwrap();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("[ ! -e /proc/$$/fd/{} ]", ch.fileno()))
        .status()
        .expect("run sh");
    assert!(status.success(), "the child inherited descriptor {}", ch.fileno());
}

// CPython test_bind: binding to an address in use fails with the OS error (EADDRINUSE).
#[test]
fn bind() {
    for family in Family::ALL {
        let (l, ep) = listener_channel(family);
        let mut other = Channel::create_socket(family.domain(), Type::STREAM).unwrap();
        if family.is_inet() {
            other.set_reuse_addr().unwrap(); // even so: the port has a listener
        }
        let err = other.bind(&ep.addr).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{family:?}: {err}");
        assert!(other.addr().is_none(), "a failed bind records no address");
        drop(l);
    }
}

// CPython test_set_reuse_addr: set_reuse_addr sets SO_REUSEADDR, which a plain socket does not
// have. (CPython skips it for AF_UNIX, where the option means nothing.)
#[test]
fn set_reuse_addr() {
    for family in Family::INET {
        let mut ch = Channel::create_socket(family.domain(), Type::STREAM).unwrap();
        assert!(!ch.socket().unwrap().reuse_address().unwrap());
        ch.set_reuse_addr().unwrap();
        assert!(ch.socket().unwrap().reuse_address().unwrap());
    }
    // A file channel has no socket: a clear error, not a panic.
    let (r, _w) = std::io::pipe().unwrap();
    let mut file = sockloop::file_dispatcher(&r).unwrap();
    assert_eq!(file.set_reuse_addr().unwrap_err().kind(), io::ErrorKind::InvalidInput);
}

// asyncore.py dispatcher.send: 0 when the send would block (the socket buffer is full), never an
// error; a disconnect returns 0 and schedules handle_close (peer_closed).
#[test]
fn send_semantics() {
    for family in Family::ALL {
        let (ours, peer) = connected_pair(family);
        let mut ch = Channel::from(ours);
        let chunk = vec![7u8; 64 * 1024];
        let mut total = 0usize;
        loop {
            let n = ch.send(&chunk).unwrap();
            if n == 0 {
                break;
            }
            total += n;
            assert!(total < 1 << 30, "the buffer never filled");
        }
        assert!(total > 0);
        assert!(!ch.peer_closed());
        // The peer resets (TCP) or closes (Unix) with unread data: sending then meets a
        // disconnect, which is 0 and a due close, not an error.
        if family.is_inet() {
            reset(peer);
        } else {
            drop(peer);
        }
        wait_until(DEADLINE, "the disconnect to show", || {
            assert_eq!(ch.send(b"more").unwrap(), 0);
            ch.peer_closed()
        });
        assert_eq!(ch.send(b"more").unwrap(), 0);
    }
}

// asyncore.py dispatcher.recv: no bytes means the peer closed (handle_close is due); a
// disconnect error likewise returns empty; would-block after a spurious readiness is
// `WouldBlock`, which a handler may return with `?` (the loop ignores it).
#[test]
fn recv_semantics() {
    for family in Family::ALL {
        let (ours, peer) = connected_pair(family);
        let mut ch = Channel::from(ours);
        let mut buf = [0u8; 16];
        assert_eq!(ch.recv(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        assert!(!ch.peer_closed());
        write_all(&peer, b"abc");
        drop(peer);
        let mut got = Vec::new();
        wait_until(DEADLINE, "end of stream", || match ch.recv(&mut buf) {
            Ok(0) => true,
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                false
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            Err(e) => panic!("{e}"),
        });
        assert_eq!(got, b"abc");
        assert!(ch.peer_closed());
    }
    for family in Family::INET {
        let (ours, peer) = connected_pair(family);
        let mut ch = Channel::from(ours);
        reset(peer);
        let mut buf = [0u8; 16];
        wait_until(DEADLINE, "the reset", || match ch.recv(&mut buf) {
            Ok(0) => true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            other => panic!("{other:?}"),
        });
        assert!(ch.peer_closed());
    }
}

// A handler that returns the WouldBlock of a spurious readiness is not an error (the seed's
// warning; asynchat's test_blockingioerror is the same rule).
fn spurious_readiness_is_not_an_error(backend: Backend) {
    struct Eager(std::rc::Rc<Counts>);
    impl sockloop::Dispatcher for Eager {
        fn writable(&self) -> bool {
            false
        }
        fn handle_read(&mut self, cx: &mut sockloop::Context<'_>) -> io::Result<()> {
            self.0.read.set(self.0.read.get() + 1);
            // Read everything, then once more: that last recv would block.
            loop {
                let n = cx.channel.recv(cx.scratch)?;
                self.0.data.borrow_mut().extend_from_slice(&cx.scratch[..n]);
            }
        }
        fn handle_error(&mut self, err: io::Error, cx: &mut sockloop::Context<'_>) {
            self.0.errors.borrow_mut().push(err);
            cx.channel.close();
        }
    }
    each_family(&Family::ALL, |family| {
        let mut lp = new_loop(backend);
        let (ours, peer) = connected_pair(family);
        let c = Counts::new();
        let t = lp.add(Channel::from(ours), Eager(c.clone())).unwrap();
        write_all(&peer, b"some data");
        drive(&mut lp, "the data", |_| c.data.borrow().len() == 9);
        for _ in 0..3 {
            lp.poll(Some(Duration::from_millis(5))).unwrap();
        }
        assert!(c.errors.borrow().is_empty(), "{:?}", c.errors.borrow());
        assert!(lp.contains(t));
    });
}

backend_tests!(spurious_readiness_is_not_an_error);

// Channels wrap existing std and socket2 sockets and raw descriptors (issue 2, item 3): the
// state flags follow what the socket is.
#[test]
fn wrap_existing_sockets() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let c = std::net::TcpStream::connect(addr).unwrap();
    let lc = Channel::from(l);
    assert!(lc.accepting() && !lc.connected());
    let cc = Channel::from(c);
    assert!(cc.connected() && !cc.accepting());
    assert_eq!(cc.addr().and_then(|a| a.as_socket()), Some(addr));
    assert!(cc.socket().unwrap().nonblocking().unwrap());
    let dir = TempDir::new("wrap");
    let ul = std::os::unix::net::UnixListener::bind(dir.path("w.sock")).unwrap();
    assert!(Channel::from(ul).accepting());
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    let fd = a.as_raw_fd();
    let ch = Channel::from(a);
    assert!(ch.connected());
    assert_eq!(ch.fileno(), fd);
    let (r, _w) = std::io::pipe().unwrap();
    let ch = Channel::from_fd(std::os::fd::OwnedFd::from(r)).unwrap();
    assert!(ch.connected() && ch.socket().is_none());
}
