//! Ping-pong load for an echo server, plain or TLS: CONNS client threads, each one connection
//! doing strict 64-byte round trips (every echoed byte compared) for SECS seconds after a short
//! warm-up. Prints the round trips done in the timed window. With `--ca PEM` the clients speak
//! TLS (rustls, through sockloop's re-export) and verify the server as `localhost`. Used by
//! `bench/tls.sh` to compare echo_server's CPU per round trip with and without TLS.

use clap::Parser;
use sockloop::tls::rustls;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "64 B ping-pong load for an echo server, plain or TLS")]
struct Args {
    /// The echo server.
    addr: SocketAddr,
    /// Speak TLS, trusting this CA (PEM); the server must be valid for `localhost`.
    #[arg(long)]
    ca: Option<std::path::PathBuf>,
    /// Concurrent connections.
    #[arg(long, default_value_t = 50)]
    conns: usize,
    /// Seconds of the timed window.
    #[arg(long, default_value_t = 5.0)]
    secs: f64,
    /// Message size in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
}

fn run(mut s: impl Read + Write, size: usize, counting: &AtomicBool, stop: &AtomicBool, done: &AtomicU64) {
    let msg: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let mut buf = vec![0u8; size];
    while !stop.load(Ordering::Relaxed) {
        s.write_all(&msg).expect("write");
        s.read_exact(&mut buf).expect("read");
        assert_eq!(buf, msg, "echoed bytes differ");
        if counting.load(Ordering::Relaxed) {
            done.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn main() {
    let args = Args::parse();
    let tls = args
        .ca
        .as_ref()
        .map(|ca| sockloop::tls::TlsConnector::from_ca_file(ca).expect("CA").config().clone());
    let (counting, stop, done) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let threads: Vec<_> = (0..args.conns)
        .map(|_| {
            let (tls, counting, stop, done) = (tls.clone(), counting.clone(), stop.clone(), done.clone());
            let (addr, size) = (args.addr, args.size);
            std::thread::spawn(move || {
                let sock = TcpStream::connect(addr).expect("connect");
                sock.set_nodelay(true).unwrap();
                match tls {
                    None => run(sock, size, &counting, &stop, &done),
                    Some(config) => {
                        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                        let conn = rustls::ClientConnection::new(config, name).expect("TLS client");
                        run(rustls::StreamOwned::new(conn, sock), size, &counting, &stop, &done)
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500)); // warm-up: connections and handshakes
    counting.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs_f64(args.secs));
    counting.store(false, Ordering::Relaxed);
    println!("{}", done.load(Ordering::Relaxed));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("client thread");
    }
}
