//! Helpers for the tests that drive the example servers as processes: start an example (found
//! by [`super::example_path`]), wait for `listening on HOST:PORT`, stop it with SIGTERM, and kill it whatever
//! happens (the guard's `Drop`). Every wait has a deadline; none is a sleep.

use super::{example_path, DEADLINE};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

/// Whether `cmd --version` runs.
pub fn have(cmd: &str) -> bool {
    Command::new(cmd)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Python 3 with the standard library, or a clear failure.
pub fn python() -> &'static str {
    assert!(
        have("python3"),
        "python3 is needed for the real-client tests (scripts/ensure-test-deps installs it)"
    );
    "python3"
}

/// Runs the Python check `script` (from `tests/py/`) against `server` with `args`, and fails
/// the test with both sides' output unless it exits 0 and prints `OK`.
pub fn run_py_check(script: &str, server: &Server, args: &[String]) {
    let out = Command::new(python()).arg(py_script(script)).args(args).output().expect("run python3");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("OK"),
        "{script} failed: {}{}\nserver stderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        server.stderr()
    );
}

/// The directory of the Python helper scripts.
pub fn py_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("py").join(name)
}

/// A running example server; killed when dropped.
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    stdout_pump: Option<thread::JoinHandle<()>>,
}

fn pump(
    r: impl Read + Send + 'static,
    buf: Arc<Mutex<String>>,
    first: Option<mpsc::Sender<String>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut first = first;
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if let Some(tx) = first.take() {
                let _ = tx.send(line.clone());
            }
            let mut b = buf.lock().unwrap();
            b.push_str(&line);
            b.push('\n');
        }
    })
}

impl Server {
    /// Starts example `name` with `args` plus `--bind 127.0.0.1:0` and waits for its
    /// `listening on` line.
    pub fn start(name: &str, args: &[&str]) -> Server {
        let mut child = Command::new(example_path(name))
            .args(args)
            .args(["--bind", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let stdout_pump = pump(child.stdout.take().unwrap(), stdout.clone(), Some(tx));
        pump(child.stderr.take().unwrap(), stderr.clone(), None);
        let mut server = Server {
            child: Some(child),
            addr: "127.0.0.1:1".parse().unwrap(),
            stdout,
            stderr,
            stdout_pump: Some(stdout_pump),
        };
        let line = rx
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("{name} printed no `listening on` line; stderr: {}", server.stderr()));
        let addr =
            line.strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        server.addr = addr.parse().unwrap_or_else(|_| panic!("bad address in {line:?}"));
        server
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Resident memory of the server, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect to the server");
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        s.set_write_timeout(Some(DEADLINE)).unwrap();
        s
    }

    /// Sends SIGTERM without waiting.
    pub fn terminate(&self) {
        let pid = rustix::process::Pid::from_raw(self.pid() as i32).expect("a pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    }

    /// SIGTERM, then the exit status and everything printed on stdout.
    pub fn stop(mut self) -> (ExitStatus, String) {
        self.terminate();
        let mut child = self.child.take().expect("running");
        let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a pid");
        let (tx, rx) = mpsc::channel();
        let waiter = thread::spawn(move || {
            let status = child.wait();
            let _ = tx.send(());
            status
        });
        if rx.recv_timeout(DEADLINE).is_err() {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            panic!("the server did not exit within {DEADLINE:?} of SIGTERM");
        }
        let status = waiter.join().unwrap().expect("wait");
        // The stdout pump finishes once the pipe closes with the process.
        if let Some(p) = self.stdout_pump.take() {
            let _ = p.join();
        }
        (status, self.stdout())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Reads lines (without the line ending) from a stream with a deadline.
pub struct Lines {
    pub r: BufReader<TcpStream>,
}

impl Lines {
    pub fn new(s: TcpStream) -> Lines {
        Lines { r: BufReader::new(s) }
    }

    /// The next line, `None` at end of stream; read errors (reset) are returned.
    pub fn next(&mut self) -> io::Result<Option<String>> {
        let mut buf = Vec::new();
        let n = self.r.read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        while buf.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
            buf.pop();
        }
        Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
    }

    pub fn line(&mut self) -> String {
        self.next().expect("read a line").expect("a line, not the end of the stream")
    }

    pub fn send(&mut self, data: &[u8]) {
        self.r.get_mut().write_all(data).expect("send");
    }
}

/// Reads until the peer closes (or resets) the connection, within the stream's read timeout;
/// returns what arrived. Panics on a timeout.
pub fn read_to_close(s: &mut impl Read) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                panic!("the connection was not closed in time; got {} bytes", out.len())
            }
            Err(_) => return out, // reset: closed too
        }
    }
}
