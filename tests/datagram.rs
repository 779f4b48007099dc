//! Datagram channels (UDP over IPv4 and IPv6, Unix datagram) in the loop, over every backend:
//! `create_socket(family, SOCK_DGRAM)`, `bind`, `recv_from`, `send_to`.

mod support;

use sockloop::{Backend, Channel, Context, Dispatcher, Domain, Loop, RunOptions, SockAddr, Type};
use std::io;
use std::time::{Duration, Instant};

/// Answers each datagram with its bytes reversed, to the sender.
struct Reverser {
    served: usize,
}

impl Dispatcher for Reverser {
    fn writable(&self) -> bool {
        false
    }
    fn handle_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let (n, from) = cx.channel.recv_from(cx.scratch)?;
        let reply: Vec<u8> = cx.scratch[..n].iter().rev().copied().collect();
        cx.channel.send_to(&reply, &from)?;
        self.served += 1;
        Ok(())
    }
}

fn exchange(backend: Backend, server_addr: SockAddr, client: std::net::UdpSocket) {
    let mut lp = Loop::with_backend(backend).unwrap();
    let domain = server_addr.domain();
    let mut ch = Channel::create_socket(domain, Type::DGRAM).unwrap();
    ch.bind(&server_addr).unwrap();
    let bound = ch.local_addr().unwrap().as_socket().unwrap();
    let t = lp.add(ch, Reverser { served: 0 }).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    for i in 0..20u8 {
        let msg = [i, 1, 2, 3];
        client.send_to(&msg, bound).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while lp.get_mut::<Reverser>(t).unwrap().0.served <= i as usize && Instant::now() < deadline {
            lp.run_with(RunOptions::new().timeout(Duration::from_millis(50)).count(1)).unwrap();
        }
        let mut buf = [0u8; 16];
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], &[3, 2, 1, i], "{backend:?}");
        assert_eq!(from, bound);
    }
}

fn udp_ipv4_and_ipv6_datagrams_are_answered_to_their_sender(backend: Backend) {
    exchange(
        backend,
        "127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into(),
        std::net::UdpSocket::bind("127.0.0.1:0").unwrap(),
    );
    exchange(
        backend,
        "[::1]:0".parse::<std::net::SocketAddr>().unwrap().into(),
        std::net::UdpSocket::bind("[::1]:0").unwrap(),
    );
}

fn unix_datagram_sockets_work_in_the_loop(backend: Backend) {
    let dir = std::env::temp_dir().join(format!("sockloop-dgram-{}-{}", std::process::id(), backend.name()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let server_path = dir.join("server");
    let client_path = dir.join("client");
    let mut lp = Loop::with_backend(backend).unwrap();
    let mut ch = Channel::create_socket(Domain::UNIX, Type::DGRAM).unwrap();
    ch.bind(&SockAddr::unix(&server_path).unwrap()).unwrap();
    let t = lp.add(ch, Reverser { served: 0 }).unwrap();
    let client = std::os::unix::net::UnixDatagram::bind(&client_path).unwrap();
    client.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    client.send_to(b"abc", &server_path).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while lp.get_mut::<Reverser>(t).unwrap().0.served == 0 && Instant::now() < deadline {
        lp.run_with(RunOptions::new().timeout(Duration::from_millis(50)).count(1)).unwrap();
    }
    let mut buf = [0u8; 8];
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"cba", "{backend:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

backend_tests!(
    udp_ipv4_and_ipv6_datagrams_are_answered_to_their_sender,
    unix_datagram_sockets_work_in_the_loop
);
