//! asynchat conformance (CPython's Lib/test/test_asynchat.py), over every backend.
//!
//! As in CPython, a threaded plain-socket echo server returns what an `AsyncChat` client
//! pushes; the client's `ac_in_buffer_size` is set to the chunk size (1, 2, 3 bytes) so records
//! arrive split across reads. Not tested because Rust's types rule them out: `push` of a
//! non-bytes object (test_push) and a negative numeric terminator
//! (test_disallow_negative_terminator); a count of 0 is tested for its defined meaning.

mod support;

use sockloop::chat::{find_prefix_at_end, AsyncChat, ChatContext, ChatHandler, SimpleProducer, Terminator};
use sockloop::{Backend, Channel, Context, Dispatcher, Loop, RunOptions};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A blocking echo server for one client: echoes until the client closes, then returns all it
/// received.
fn echo_server() -> (std::net::SocketAddr, JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    all.extend_from_slice(&buf[..n]);
                    if s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        all
    });
    (addr, handle)
}

#[derive(Default)]
struct Client {
    buffer: Vec<u8>,
    contents: Vec<Vec<u8>>,
    /// Stop the loop once this many records arrived.
    want: usize,
}

impl ChatHandler for Client {
    fn collect_incoming_data(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    fn found_terminator(&mut self, chat: &mut ChatContext<'_>) -> io::Result<()> {
        self.contents.push(std::mem::take(&mut self.buffer));
        if self.contents.len() >= self.want {
            chat.lp.stop();
        }
        Ok(())
    }
}

/// Runs the loop until `done` says so about the client (or panics after 20 s).
fn run_until(lp: &mut Loop, token: sockloop::Token, done: impl Fn(&AsyncChat<Client>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        match lp.get_mut::<AsyncChat<Client>>(token) {
            Some((c, _)) if done(c) => return,
            None => return,
            Some(_) => {}
        }
        lp.run_with(RunOptions::new().timeout(Duration::from_millis(50)).count(1)).unwrap();
    }
    panic!("condition not reached within 20 s");
}

fn client(
    lp: &mut Loop,
    addr: std::net::SocketAddr,
    term: Terminator,
    chunk: usize,
    want: usize,
) -> sockloop::Token {
    let mut chat = AsyncChat::new(Client { want, ..Client::default() });
    chat.set_terminator(term);
    chat.set_buffer_sizes(chunk, 65536);
    lp.add(Channel::tcp_connect(addr).unwrap(), chat).unwrap()
}

fn push(lp: &mut Loop, t: sockloop::Token, data: &[u8]) {
    with_chat(lp, t, |chat, ch| chat.push(ch, data).unwrap());
}

/// Lends a client's chat and channel together (as `Context::get_mut` does inside handlers).
fn with_chat(lp: &mut Loop, t: sockloop::Token, f: impl FnOnce(&mut AsyncChat<Client>, &mut Channel)) {
    let mut f = Some(f);
    lp.for_each_mut::<AsyncChat<Client>>(|tok, chat, ch| {
        if tok == t {
            if let Some(f) = f.take() {
                f(chat, ch)
            }
        }
    });
    assert!(f.is_none(), "channel not found");
}

fn line_terminator(backend: Backend, term: &[u8]) {
    for chunk in [1, 2, 3] {
        let (addr, server) = echo_server();
        let mut lp = Loop::with_backend(backend).unwrap();
        let t = client(&mut lp, addr, Terminator::from(term), chunk, 2);
        push(&mut lp, t, b"hello ");
        let mut rest = b"world".to_vec();
        rest.extend_from_slice(term);
        rest.extend_from_slice(b"I'm not dead yet!");
        rest.extend_from_slice(term);
        push(&mut lp, t, &rest);
        run_until(&mut lp, t, |c| c.handler.contents.len() >= 2);
        let c = lp.get_mut::<AsyncChat<Client>>(t).unwrap().0;
        assert_eq!(
            c.handler.contents,
            vec![b"hello world".to_vec(), b"I'm not dead yet!".to_vec()],
            "{backend:?} chunk {chunk}"
        );
        lp.close_all();
        server.join().unwrap();
    }
}

fn line_terminator1(backend: Backend) {
    // test_line_terminator1
    line_terminator(backend, b"\n");
}

fn line_terminator2(backend: Backend) {
    // test_line_terminator2
    line_terminator(backend, b"\r\n");
}

fn line_terminator3(backend: Backend) {
    // test_line_terminator3
    line_terminator(backend, b"qqq");
}

fn numeric_terminator(backend: Backend, n: usize, want: &[u8]) {
    let (addr, server) = echo_server();
    let mut lp = Loop::with_backend(backend).unwrap();
    let t = client(&mut lp, addr, Terminator::Count(n), 65536, 1);
    push(&mut lp, t, b"hello world, I'm not dead yet!\n");
    // The whole echo arrives: the first n bytes as a record, the rest collected after it.
    run_until(&mut lp, t, |c| c.handler.contents.len() == 1 && c.handler.buffer.len() == 31 - n);
    let c = lp.get_mut::<AsyncChat<Client>>(t).unwrap().0;
    assert_eq!(c.handler.contents, vec![want.to_vec()], "{backend:?}");
    assert_eq!(c.get_terminator(), &Terminator::Count(0));
    lp.close_all();
    server.join().unwrap();
}

fn numeric_terminator1(backend: Backend) {
    // test_numeric_terminator1
    numeric_terminator(backend, 1, b"h");
}

fn numeric_terminator2(backend: Backend) {
    // test_numeric_terminator2
    numeric_terminator(backend, 6, b"hello ");
}

fn none_terminator_and_count_zero_deliver_everything(backend: Backend) {
    // test_none_terminator; a count of 0 has the same meaning (see Terminator's docs).
    for term in [Terminator::None, Terminator::Count(0)] {
        let (addr, server) = echo_server();
        let mut lp = Loop::with_backend(backend).unwrap();
        let t = client(&mut lp, addr, term.clone(), 65536, 1);
        let data = b"hello world, I'm not dead yet!\n";
        push(&mut lp, t, data);
        run_until(&mut lp, t, |c| c.handler.buffer.len() == data.len());
        let c = lp.get_mut::<AsyncChat<Client>>(t).unwrap().0;
        assert!(c.handler.contents.is_empty(), "{backend:?}");
        assert_eq!(c.handler.buffer, data.to_vec());
        lp.close_all();
        server.join().unwrap();
    }
}

fn simple_producer_and_string_producer(backend: Backend) {
    // test_simple_producer, test_string_producer
    for string in [false, true] {
        let (addr, server) = echo_server();
        let mut lp = Loop::with_backend(backend).unwrap();
        let t = client(&mut lp, addr, Terminator::from("\n"), 65536, 2);
        let data = b"hello world\nI'm not dead yet!\n".to_vec();
        with_chat(&mut lp, t, |chat, ch| {
            if string {
                chat.push_with_producer(ch, data.clone()).unwrap()
            } else {
                chat.push_with_producer(ch, SimpleProducer::with_buffer_size(data.clone(), 8)).unwrap()
            }
        });
        run_until(&mut lp, t, |c| c.handler.contents.len() >= 2);
        let c = lp.get_mut::<AsyncChat<Client>>(t).unwrap().0;
        assert_eq!(c.handler.contents, vec![b"hello world".to_vec(), b"I'm not dead yet!".to_vec()]);
        lp.close_all();
        server.join().unwrap();
    }
}

fn empty_line(backend: Backend) {
    // test_empty_line
    let (addr, server) = echo_server();
    let mut lp = Loop::with_backend(backend).unwrap();
    let t = client(&mut lp, addr, Terminator::from("\n"), 65536, 3);
    push(&mut lp, t, b"hello world\n\nI'm not dead yet!\n");
    run_until(&mut lp, t, |c| c.handler.contents.len() >= 3);
    let c = lp.get_mut::<AsyncChat<Client>>(t).unwrap().0;
    assert_eq!(
        c.handler.contents,
        vec![b"hello world".to_vec(), b"".to_vec(), b"I'm not dead yet!".to_vec()]
    );
    lp.close_all();
    server.join().unwrap();
}

fn close_when_done(backend: Backend) {
    // test_close_when_done: everything pushed before close_when_done reaches the peer, then
    // the channel closes.
    let (addr, server) = echo_server();
    let mut lp = Loop::with_backend(backend).unwrap();
    let t = client(&mut lp, addr, Terminator::from("\n"), 65536, 99);
    with_chat(&mut lp, t, |chat, ch| {
        chat.push(ch, b"hello world\n").unwrap();
        chat.push_with_producer(ch, SimpleProducer::with_buffer_size(b"I'm not dead yet!\n".to_vec(), 3))
            .unwrap();
    });
    // close_when_done through a one-shot dispatcher call: use the chat's own context.
    lp.run_with(RunOptions::new().timeout(Duration::from_millis(10)).count(1)).unwrap();
    with_chat(&mut lp, t, |chat, ch| {
        let _ = chat;
        ch.close_when_done();
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while lp.contains(t) && Instant::now() < deadline {
        lp.run_with(RunOptions::new().timeout(Duration::from_millis(50)).count(1)).unwrap();
    }
    assert!(!lp.contains(t), "{backend:?}: channel still open");
    assert_eq!(server.join().unwrap(), b"hello world\nI'm not dead yet!\n".to_vec());
}

fn close_when_done_from_found_terminator(backend: Backend) {
    // A server that answers QUIT with a reply and close_when_done: the reply arrives, then EOF.
    struct Quitter;
    impl ChatHandler for Quitter {
        fn collect_incoming_data(&mut self, _: &[u8]) {}
        fn found_terminator(&mut self, chat: &mut ChatContext<'_>) -> io::Result<()> {
            chat.push_with_producer(SimpleProducer::with_buffer_size(b"221 bye\r\n".to_vec(), 2))?;
            chat.channel.close_when_done();
            Ok(())
        }
    }
    struct Server;
    impl Dispatcher for Server {
        fn handle_accepted(
            &mut self,
            s: socket2::Socket,
            _: socket2::SockAddr,
            cx: &mut Context<'_>,
        ) -> io::Result<()> {
            let mut chat = AsyncChat::new(Quitter);
            chat.set_terminator("\r\n");
            cx.lp.add(Channel::from(s), chat)?;
            cx.channel.close(); // one client only: the map empties when it is done
            Ok(())
        }
    }
    let mut lp = Loop::with_backend(backend).unwrap();
    let listener = Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 8).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    lp.add(listener, Server).unwrap();
    let peer = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(b"QUIT\r\n").unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got
    });
    lp.run_with(RunOptions::new().timeout(Duration::from_secs(1))).unwrap();
    assert_eq!(peer.join().unwrap(), b"221 bye\r\n".to_vec(), "{backend:?}");
}

fn blocking_io_error_in_handle_read_is_not_an_error(backend: Backend) {
    // test_blockingioerror: a read that would block after readiness is harmless.
    struct Twice {
        errors: u32,
        reads: u32,
    }
    impl Dispatcher for Twice {
        fn writable(&self) -> bool {
            false
        }
        fn handle_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
            let mut buf = [0u8; 64];
            cx.channel.recv(&mut buf)?;
            self.reads += 1;
            cx.channel.recv(&mut buf)?; // nothing left: WouldBlock, returned with `?`
            unreachable!("the second read had data");
        }
        fn handle_error(&mut self, _: io::Error, _: &mut Context<'_>) {
            self.errors += 1;
        }
    }
    let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut lp = Loop::with_backend(backend).unwrap();
    let t = lp.add(Channel::from(a), Twice { errors: 0, reads: 0 }).unwrap();
    b.write_all(b"x").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while lp.get_mut::<Twice>(t).unwrap().0.reads == 0 && Instant::now() < deadline {
        lp.poll(Some(Duration::from_millis(50))).unwrap();
    }
    let d = lp.get_mut::<Twice>(t).unwrap().0;
    assert_eq!((d.reads, d.errors), (1, 0), "{backend:?}");
    assert!(lp.contains(t));
    b.shutdown(Shutdown::Both).unwrap();
}

#[test]
fn find_prefix_at_end_cases() {
    // test_find_prefix_at_end
    assert_eq!(find_prefix_at_end(b"qwerty\r", b"\r\n"), 1);
    assert_eq!(find_prefix_at_end(b"qwertydkjf", b"\r\n"), 0);
}

fn a_line_that_never_ends_reaches_handle_error_and_closes_only_that_channel(backend: Backend) {
    // Issue 3's input bound: a distinct error kind, that channel only.
    use std::cell::RefCell;
    use std::rc::Rc;
    struct Limited {
        seen: Rc<RefCell<Vec<bool>>>,
    }
    impl ChatHandler for Limited {
        fn collect_incoming_data(&mut self, _: &[u8]) {}
        fn found_terminator(&mut self, chat: &mut ChatContext<'_>) -> io::Result<()> {
            chat.push(b"ok\n")
        }
        fn handle_error(&mut self, err: io::Error, chat: &mut ChatContext<'_>) {
            self.seen.borrow_mut().push(sockloop::chat::InputLimit::is(&err));
            chat.channel.close();
        }
    }
    let seen = Rc::new(RefCell::new(Vec::new()));
    let mut lp = Loop::with_backend(backend).unwrap();
    let mut tokens = Vec::new();
    let mut peers = Vec::new();
    for _ in 0..2 {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut chat = AsyncChat::new(Limited { seen: seen.clone() });
        chat.set_terminator("\n");
        chat.set_max_record(1000);
        tokens.push(lp.add(Channel::from(a), chat).unwrap());
        peers.push(b);
    }
    peers[0].write_all(&[b'x'; 5000]).unwrap();
    peers[1].write_all(b"fine\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while (lp.contains(tokens[0]) || seen.borrow().is_empty()) && Instant::now() < deadline {
        lp.poll(Some(Duration::from_millis(50))).unwrap();
    }
    assert_eq!(*seen.borrow(), vec![true], "{backend:?}");
    assert!(!lp.contains(tokens[0]));
    assert!(lp.contains(tokens[1]));
    // The other channel was served: its reply is already in the socket.
    let mut reply = [0u8; 3];
    peers[1].set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    peers[1].read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"ok\n");
}

fn a_failing_producer_reaches_handle_error_and_closes_the_channel(backend: Backend) {
    // asynchat: an exception raised by a producer's more() went to handle_error.
    use std::cell::RefCell;
    use std::rc::Rc;
    struct Flaky(u32);
    impl sockloop::chat::Producer for Flaky {
        fn more(&mut self) -> io::Result<Vec<u8>> {
            self.0 += 1;
            match self.0 {
                1 => Ok(b"first chunk\n".to_vec()),
                _ => Err(io::Error::other("the disk went away")),
            }
        }
    }
    struct Sender {
        errors: Rc<RefCell<Vec<String>>>,
    }
    impl ChatHandler for Sender {
        fn collect_incoming_data(&mut self, _: &[u8]) {}
        fn found_terminator(&mut self, _: &mut ChatContext<'_>) -> io::Result<()> {
            Ok(())
        }
        fn handle_error(&mut self, err: io::Error, chat: &mut ChatContext<'_>) {
            self.errors.borrow_mut().push(err.to_string());
            chat.channel.close();
        }
    }
    let errors = Rc::new(RefCell::new(Vec::new()));
    let mut lp = Loop::with_backend(backend).unwrap();
    let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut channel = Channel::from(a);
    let mut chat = AsyncChat::new(Sender { errors: errors.clone() });
    // The first chunk goes out at once; the failure comes on the next refill.
    assert!(chat.push_with_producer(&mut channel, Flaky(0)).is_err());
    let t = lp.add(channel, chat).unwrap();
    assert!(lp.contains(t));
    lp.close_channel(t);
    let mut got = Vec::new();
    b.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"first chunk\n", "{backend:?}");
    // Queued behind other output, the failure reaches handle_error from handle_write.
    let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut channel = Channel::from(a);
    channel.set_output_limits(usize::MAX, usize::MAX);
    let mut chat = AsyncChat::new(Sender { errors: errors.clone() });
    chat.set_buffer_sizes(65536, 1);
    chat.push(&mut channel, &vec![b'x'; 4 << 20]).unwrap(); // fills the socket
    chat.push_with_producer(&mut channel, Flaky(0)).unwrap(); // waits behind it
    let t = lp.add(channel, chat).unwrap();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        b.read_to_end(&mut got).unwrap();
        got.len()
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while lp.contains(t) && Instant::now() < deadline {
        lp.poll(Some(Duration::from_millis(50))).unwrap();
    }
    assert!(!lp.contains(t), "{backend:?}");
    assert_eq!(reader.join().unwrap(), (4 << 20) + b"first chunk\n".len(), "{backend:?}");
    assert_eq!(*errors.borrow(), vec!["the disk went away".to_string()], "{backend:?}");
    errors.borrow_mut().clear();
}

backend_tests!(
    line_terminator1,
    line_terminator2,
    line_terminator3,
    numeric_terminator1,
    numeric_terminator2,
    none_terminator_and_count_zero_deliver_everything,
    simple_producer_and_string_producer,
    empty_line,
    close_when_done,
    close_when_done_from_found_terminator,
    blocking_io_error_in_handle_read_is_not_an_error,
    a_line_that_never_ends_reaches_handle_error_and_closes_only_that_channel,
    a_failing_producer_reaches_handle_error_and_closes_the_channel
);
