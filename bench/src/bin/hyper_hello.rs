//! hyper 1 hello-world on tokio (hyper's own example): HTTP/1.1 keep-alive, `Hello, World!`.
//! The HTTP peer of sockloop's http_server under `wrk`. Prints `listening on HOST:PORT`.

use bytes_free::full;
use clap::Parser;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::io::{self, Write};
use std::net::SocketAddr;
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(about = "tokio + hyper hello-world HTTP server")]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Use the multi_thread runtime instead of current_thread.
    #[arg(long)]
    multi_thread: bool,
}

mod bytes_free {
    use http_body_util::Full;
    use hyper::body::Bytes;
    pub fn full(s: &'static str) -> Full<Bytes> {
        Full::new(Bytes::from_static(s.as_bytes()))
    }
}

async fn hello(
    _: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<http_body_util::Full<hyper::body::Bytes>>, Infallible> {
    Ok(hyper::Response::new(full("Hello, World!")))
}

fn main() -> io::Result<()> {
    let args = Args::parse();
    let rt = if args.multi_thread {
        tokio::runtime::Builder::new_multi_thread().enable_io().build()?
    } else {
        tokio::runtime::Builder::new_current_thread().enable_io().build()?
    };
    rt.block_on(async move {
        let listener = TcpListener::bind(args.bind).await?;
        println!("listening on {}", listener.local_addr()?);
        io::stdout().flush()?;
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            stream.set_nodelay(true)?;
            tokio::spawn(async move {
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service_fn(hello)).await;
            });
        }
    })
}
