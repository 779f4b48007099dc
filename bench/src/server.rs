//! Starting a server process pinned to a CPU, waiting for its `listening on HOST:PORT` line,
//! stopping it; attaching `strace -c -f` to it for a while.

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A server the runner knows how to start.
#[derive(Clone, Debug)]
pub struct ServerSpec {
    /// Its name in tables (`sockloop-epoll`, `mio`, ...).
    pub name: String,
    /// Program and arguments; `--bind 127.0.0.1:0` is appended.
    pub argv: Vec<String>,
    /// Why it cannot run here, if it cannot.
    pub unavailable: Option<String>,
}

/// A started server.
pub struct Running {
    child: Child,
    /// Its process id (taskset execs the server, so this is the server's).
    pub pid: u32,
    /// Where it listens.
    pub addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

/// Starts `spec` pinned to `cpu` and waits (up to 15 s) for its `listening on` line.
pub fn start(spec: &ServerSpec, cpu: usize) -> io::Result<Running> {
    start_on(spec, &cpu.to_string())
}

/// [`start`] on a `taskset -c` CPU list (`0`, `0-3`, `0,2`).
pub fn start_on(spec: &ServerSpec, cpus: &str) -> io::Result<Running> {
    let mut cmd = Command::new("taskset");
    cmd.arg("-c").arg(cpus).args(&spec.argv).args(["--bind", "127.0.0.1:0"]);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| io::Error::new(e.kind(), format!("taskset: {e}")))?;
    let pid = child.id();
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr_pipe = child.stderr.take().expect("piped stderr");
    let stderr = Arc::new(Mutex::new(String::new()));
    let sink = stderr.clone();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stderr_pipe);
        let mut line = String::new();
        while matches!(r.read_line(&mut line), Ok(n) if n > 0) {
            let mut s = sink.lock().unwrap_or_else(|p| p.into_inner());
            if s.len() < 64 * 1024 {
                s.push_str(&line);
            }
            line.clear();
        }
    });
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut line = String::new();
        let mut sent = false;
        loop {
            line.clear();
            // Keep draining after the line so the server never blocks on a full pipe.
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if !sent {
                        if let Some(a) = line.trim().strip_prefix("listening on ") {
                            let _ = tx.send(a.to_string());
                            sent = true;
                        }
                    }
                }
            }
        }
    });
    let addr = match rx.recv_timeout(Duration::from_secs(15)) {
        Ok(a) => a,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            let err = stderr.lock().map(|s| s.clone()).unwrap_or_default();
            return Err(io::Error::other(format!(
                "{} did not print `listening on`: {}",
                spec.name,
                last_line(&err)
            )));
        }
    };
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad address {addr:?}: {e}")))?;
    Ok(Running { child, pid, addr, stderr })
}

fn last_line(s: &str) -> String {
    s.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string()
}

impl Running {
    /// If the server has exited: a short description with the last line of its stderr.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => {
                std::thread::sleep(Duration::from_millis(50));
                let err = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
                Some(format!("server exited ({status}): {}", last_line(&err)))
            }
            _ => None,
        }
    }

    /// Kills the server and reaps it.
    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `strace -c -f -p PID`.
pub struct Strace {
    child: Child,
    out: PathBuf,
}

/// Attaches `strace -c -f` to `pid` and waits until it reports the attach.
pub fn strace_attach(pid: u32, out: PathBuf) -> io::Result<Strace> {
    let mut child = Command::new("strace")
        .args(["-c", "-f", "-p", &pid.to_string(), "-o"])
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stderr);
        let mut line = String::new();
        let mut told = false;
        while matches!(r.read_line(&mut line), Ok(n) if n > 0) {
            if !told && line.contains("attached") {
                let _ = tx.send(());
                told = true;
            }
            line.clear();
        }
    });
    if rx.recv_timeout(Duration::from_secs(10)).is_err() {
        let _ = child.kill();
        let _ = child.wait();
        return Err(io::Error::other("strace did not attach (ptrace not permitted?)"));
    }
    // Let it finish attaching every thread.
    std::thread::sleep(Duration::from_millis(100));
    Ok(Strace { child, out })
}

impl Strace {
    /// Detaches (SIGINT) and returns the total syscall count and the per-call counts.
    pub fn finish(mut self) -> io::Result<(u64, Vec<(String, u64)>)> {
        crate::sys::kill(self.child.id(), libc::SIGINT)?;
        self.child.wait()?;
        let text = std::fs::read_to_string(&self.out)?;
        let _ = std::fs::remove_file(&self.out);
        Ok(parse_strace_summary(&text))
    }
}

/// Parses `strace -c` output: (total calls, [(syscall, calls)]), most frequent first.
pub fn parse_strace_summary(text: &str) -> (u64, Vec<(String, u64)>) {
    let mut total = 0;
    let mut calls = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 || f[0].starts_with('%') || f[0].starts_with('-') {
            continue;
        }
        let Ok(n) = f[3].parse::<u64>() else { continue };
        let name = f[f.len() - 1].to_string();
        if name == "total" {
            total = n;
        } else {
            calls.push((name, n));
        }
    }
    calls.sort_by_key(|c| std::cmp::Reverse(c.1));
    if total == 0 {
        total = calls.iter().map(|c| c.1).sum();
    }
    (total, calls)
}

/// The syscalls counted one by one by [`perf_attach`]; the rest are reported as `other`.
const PERF_SYSCALLS: &[&str] = &[
    "recvfrom",
    "sendto",
    "read",
    "write",
    "readv",
    "writev",
    "recvmsg",
    "sendmsg",
    "epoll_wait",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_ctl",
    "poll",
    "ppoll",
    "select",
    "pselect6",
    "futex",
    "accept4",
    "sched_yield",
    "clock_nanosleep",
];

/// A running `perf stat` counting the syscall tracepoints of a process (all its threads).
/// Unlike strace it does not stop the traced process at every call, so it does not change
/// the timing that decides whether a read-until-EAGAIN loop finds more data.
pub struct PerfStat {
    child: Child,
    out: PathBuf,
}

/// Starts `perf stat -e raw_syscalls:sys_enter,syscalls:sys_enter_<name>... -p pid`.
pub fn perf_attach(pid: u32, out: PathBuf) -> io::Result<PerfStat> {
    let mut events = vec!["raw_syscalls:sys_enter".to_string()];
    events.extend(PERF_SYSCALLS.iter().map(|s| format!("syscalls:sys_enter_{s}")));
    let child = Command::new("perf")
        .args(["stat", "-x", ",", "-o"])
        .arg(&out)
        .args(["-e", &events.join(","), "-p", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(300));
    Ok(PerfStat { child, out })
}

impl PerfStat {
    /// Stops counting (SIGINT) and returns the total and the per-call counts.
    pub fn finish(mut self) -> io::Result<(u64, Vec<(String, u64)>)> {
        crate::sys::kill(self.child.id(), libc::SIGINT)?;
        let status = self.child.wait()?;
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let _ = std::fs::remove_file(&self.out);
        let mut total = None;
        let mut calls = Vec::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split(',').collect();
            if f.len() < 3 {
                continue;
            }
            let Ok(n) = f[0].trim().parse::<u64>() else { continue };
            let ev = f[2].trim();
            if ev == "raw_syscalls:sys_enter" {
                total = Some(n);
            } else if let Some(name) = ev.strip_prefix("syscalls:sys_enter_") {
                if n > 0 {
                    calls.push((name.to_string(), n));
                }
            }
        }
        let Some(total) = total else {
            return Err(io::Error::other(format!("perf stat gave no count ({status}): {}", text.trim())));
        };
        let listed: u64 = calls.iter().map(|c| c.1).sum();
        if total > listed {
            calls.push(("other".into(), total - listed));
        }
        calls.sort_by_key(|c| std::cmp::Reverse(c.1));
        Ok((total, calls))
    }
}
