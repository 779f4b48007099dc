//! tokio echo server, the way tokio's own example writes it: a task per connection, a 64 KiB
//! buffer per task, `read` then `write_all`. `--multi-thread` picks the work-stealing runtime.
//! Prints `listening on HOST:PORT` once ready.

use clap::Parser;
use std::io::{self, Write};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(about = "tokio echo server (a task per connection, 64 KiB buffer)")]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Use the multi_thread runtime instead of current_thread.
    #[arg(long)]
    multi_thread: bool,
}

fn main() -> io::Result<()> {
    let args = Args::parse();
    let rt = if args.multi_thread {
        tokio::runtime::Builder::new_multi_thread().enable_io().build()?
    } else {
        tokio::runtime::Builder::new_current_thread().enable_io().build()?
    };
    rt.block_on(serve(args.bind))
}

async fn serve(bind: SocketAddr) -> io::Result<()> {
    let listener = TcpListener::bind(bind).await?;
    println!("listening on {}", listener.local_addr()?);
    io::stdout().flush()?;
    loop {
        let (mut sock, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("accept: {e}");
                continue;
            }
        };
        sock.set_nodelay(true)?;
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match sock.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if sock.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        });
    }
}
