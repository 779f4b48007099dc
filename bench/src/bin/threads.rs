//! The many-cores benchmark (issue 16): `echo_server` and `http_server` with one loop and with
//! `--threads N`, each way of sharing the address (`reuseport`, `handoff`), servers interleaved
//! within each round. Per measurement: a fresh server (on `--server-cpus`), the load generator
//! (echo: this process's one-thread mio ping-pong client, every byte checked; HTTP: `wrk -t
//! --wrk-threads -c CONNS`) on `--client-cpus`, a warm-up, then a timed window: requests (round
//! trips) per second, server CPU per request from `/proc/PID/stat`, and each loop thread's share
//! of the server's CPU from `/proc/PID/task/*/stat`. Prints a Markdown table (median over
//! rounds, min-max of requests/s) and writes it to `--markdown`.
//!
//! ```text
//! cargo build --release --examples -p sockloop && cargo build --release -p sockloop-bench
//! target/release/threads --rounds 3                       # 2 cores: everything shares them
//! target/release/threads --threads 1,4 --server-cpus 0-3 --client-cpus 4-7 --wrk-threads 4 \
//!     --conns-per-loop --pin                              # a bigger machine
//! ```

use clap::Parser;
use sockloop_bench::loadgen::Client;
use sockloop_bench::server::{self, ServerSpec};
use sockloop_bench::sys;
use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "echo_server and http_server with one loop and with --threads N")]
struct Args {
    /// Rounds (configurations are interleaved within each round, the order rotated).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Timed window, seconds.
    #[arg(long, default_value_t = 3.0)]
    window: f64,
    /// Warm-up before the window, seconds.
    #[arg(long, default_value_t = 0.5)]
    warmup: f64,
    /// Loop counts to measure (comma-separated; 1 is one loop).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    /// Connections (in all, or per loop with --conns-per-loop).
    #[arg(long, default_value_t = 50)]
    conns: usize,
    /// Scale the connections with the loops (the issue's target is at 50 per loop).
    #[arg(long)]
    conns_per_loop: bool,
    /// Echo message size in bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// taskset CPU list for the server (default: every CPU, shared with the client).
    #[arg(long)]
    server_cpus: Option<String>,
    /// taskset CPU list for wrk, and the first CPU of it for the echo client (default: every CPU).
    #[arg(long)]
    client_cpus: Option<String>,
    /// wrk threads.
    #[arg(long, default_value_t = 1)]
    wrk_threads: usize,
    /// Pass --pin to the servers (loop i on the i-th CPU of --server-cpus).
    #[arg(long)]
    pin: bool,
    /// Only these workloads (echo; http: keep-alive; http-close: a new connection per request,
    /// which measures the accept path).
    #[arg(long, value_delimiter = ',', default_value = "echo,http,http-close")]
    workloads: Vec<String>,
    /// Where the release examples are (default: next to this program).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Markdown output (also printed).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results/threads-latest.md"))]
    markdown: PathBuf,
}

#[derive(Clone)]
struct Config {
    workload: &'static str,
    loops: usize,
    sharing: &'static str,
}

impl Config {
    fn name(&self) -> String {
        if self.loops == 1 {
            format!("{} 1 loop", self.workload)
        } else {
            format!("{} {} loops {}", self.workload, self.loops, self.sharing)
        }
    }
}

#[derive(Default, Clone)]
struct Sample {
    rps: f64,
    cpu_us_per_req: f64,
    /// Each loop thread's share of the server's CPU over the window.
    shares: Vec<f64>,
    /// The server's CPU over the window, in CPUs (1.0 = one core busy).
    cpus_used: f64,
}

/// CPU ticks (user + system) of each `sockloop-*` thread of `pid`, ordered by thread name.
fn loop_ticks(pid: u32) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for entry in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let comm = stat[open + 1..close].to_string();
        let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let ticks = f.get(11).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        if comm.starts_with("sockloop-") {
            out.push((comm, ticks));
        }
    }
    out.sort();
    out
}

fn shares(before: &[(String, u64)], after: &[(String, u64)], cpu_us: u64) -> Vec<f64> {
    let tick_us = 1_000_000 / sys::clock_ticks();
    after
        .iter()
        .map(|(name, t1)| {
            let t0 = before.iter().find(|(n, _)| n == name).map_or(0, |(_, t)| *t);
            ((t1 - t0) * tick_us) as f64 / cpu_us.max(1) as f64
        })
        .collect()
}

fn measure(args: &Args, bin: &std::path::Path, cfg: &Config) -> io::Result<Sample> {
    let example = if cfg.workload == "echo" { "echo_server" } else { "http_server" };
    let mut argv = vec![bin.join("examples").join(example).to_string_lossy().into_owned()];
    if cfg.workload == "echo" {
        argv.push("--quiet".into());
    }
    argv.extend(["--threads".into(), cfg.loops.to_string(), "--sharing".into(), cfg.sharing.into()]);
    if args.pin {
        argv.push("--pin".into());
    }
    let spec = ServerSpec { name: cfg.name(), argv, unavailable: None };
    let all = format!("0-{}", sys_cpus() - 1);
    let srv = server::start_on(&spec, args.server_cpus.as_deref().unwrap_or(&all))?;
    let conns = if args.conns_per_loop { args.conns * cfg.loops } else { args.conns };
    let window = Duration::from_secs_f64(args.window);
    let result = if cfg.workload == "echo" {
        let mut client = Client::new(srv.addr)?;
        client.open(conns, args.size, true, Duration::from_secs(20))?;
        client.run(Duration::from_secs_f64(args.warmup), false, None)?;
        let t0 = loop_ticks(srv.pid);
        let st = client.run(window, false, Some(srv.pid))?;
        let t1 = loop_ticks(srv.pid);
        let (c0, c1) = st.cpu_us.unwrap_or((0, 0));
        let rts = st.round_trips.max(1);
        Ok(Sample {
            rps: st.round_trips as f64 / st.elapsed.as_secs_f64(),
            cpu_us_per_req: (c1 - c0) as f64 / rts as f64,
            shares: shares(&t0, &t1, c1 - c0),
            cpus_used: (c1 - c0) as f64 / st.elapsed.as_secs_f64() / 1e6,
        })
    } else {
        let url = format!("http://{}/", srv.addr);
        let close = cfg.workload == "http-close";
        wrk(args, &url, conns, args.warmup.max(1.0), close)?;
        let (c0, t0) = (sys::cpu_micros(srv.pid)?, loop_ticks(srv.pid));
        let start = std::time::Instant::now();
        let rps = wrk(args, &url, conns, args.window, close)?;
        let elapsed = start.elapsed().as_secs_f64();
        let (c1, t1) = (sys::cpu_micros(srv.pid)?, loop_ticks(srv.pid));
        let reqs = (rps * elapsed).max(1.0);
        Ok(Sample {
            rps,
            cpu_us_per_req: (c1 - c0) as f64 / reqs,
            shares: shares(&t0, &t1, c1 - c0),
            cpus_used: (c1 - c0) as f64 / elapsed / 1e6,
        })
    };
    srv.stop();
    result
}

fn sys_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs wrk for `secs` (whole seconds, at least 1) and returns its requests/s; with `close`,
/// every request on a new connection.
fn wrk(args: &Args, url: &str, conns: usize, secs: f64, close: bool) -> io::Result<f64> {
    let all = format!("0-{}", sys_cpus() - 1);
    let cpus = args.client_cpus.as_deref().unwrap_or(&all);
    let mut cmd = Command::new("taskset");
    cmd.args(["-c", cpus, "wrk", &format!("-t{}", args.wrk_threads), &format!("-c{conns}")])
        .arg(format!("-d{}s", secs.round().max(1.0) as u64));
    if close {
        cmd.args(["-H", "Connection: close"]);
    }
    let out = cmd.arg(url).output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() || text.contains("Non-2xx") {
        return Err(io::Error::other(format!("wrk: {text} {}", String::from_utf8_lossy(&out.stderr))));
    }
    if let Some(errors) = text.lines().find(|l| l.contains("Socket errors")) {
        eprintln!("wrk {url}: {}", errors.trim());
    }
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:").and_then(|v| v.trim().parse().ok()))
        .ok_or_else(|| io::Error::other(format!("no Requests/sec in wrk's output: {text}")))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

fn main() -> io::Result<()> {
    let args = Args::parse();
    let bin = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?.parent().expect("a directory").to_path_buf(),
    };
    sys::raise_nofile(65536)?;
    if let Some(c) = &args.client_cpus {
        let first = c.split([',', '-']).next().and_then(|s| s.parse().ok()).unwrap_or(0);
        sys::pin_to_cpu(first)?;
    }
    let mut configs = Vec::new();
    for workload in ["echo", "http", "http-close"] {
        if !args.workloads.iter().any(|w| w == workload) {
            continue;
        }
        for &loops in &args.threads {
            if loops == 1 {
                configs.push(Config { workload, loops, sharing: "reuseport" });
            } else {
                for sharing in ["reuseport", "handoff"] {
                    configs.push(Config { workload, loops, sharing });
                }
            }
        }
    }
    let mut samples: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    for round in 0..args.rounds {
        for k in 0..configs.len() {
            let cfg = &configs[(k + round) % configs.len()];
            match measure(&args, &bin, cfg) {
                Ok(s) => {
                    eprintln!(
                        "round {round}: {}: {:.0} req/s, {:.2} µs CPU/req, {:.2} CPUs, shares {:.2?}",
                        cfg.name(),
                        s.rps,
                        s.cpu_us_per_req,
                        s.cpus_used,
                        s.shares
                    );
                    samples.entry(cfg.name()).or_default().push(s);
                }
                Err(e) => eprintln!("round {round}: {}: failed: {e}", cfg.name()),
            }
        }
    }
    let mut md = String::new();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    md.push_str(
        "| configuration | requests/s (median) | min-max | server CPU µs/request | server CPUs busy | loop threads' shares of server CPU |\n\
         |---|---:|---:|---:|---:|---|\n",
    );
    for cfg in &configs {
        let Some(v) = samples.get(&cfg.name()) else { continue };
        let rps: Vec<f64> = v.iter().map(|s| s.rps).collect();
        let (lo, hi) = rps.iter().fold((f64::MAX, 0f64), |(l, h), &x| (l.min(x), h.max(x)));
        let nshares = v.iter().map(|s| s.shares.len()).max().unwrap_or(0);
        let shares: Vec<String> = (0..nshares)
            .map(|i| {
                format!("{:.0}%", 100.0 * median(v.iter().filter_map(|s| s.shares.get(i).copied()).collect()))
            })
            .collect();
        md.push_str(&format!(
            "| {} | {:.0} | {:.0}-{:.0} | {:.2} | {:.2} | {} |\n",
            cfg.name(),
            median(rps.clone()),
            lo,
            hi,
            median(v.iter().map(|s| s.cpu_us_per_req).collect()),
            median(v.iter().map(|s| s.cpus_used).collect()),
            shares.join(" / ")
        ));
    }
    md.push_str(&format!(
        "\n{} rounds, {} s windows, {} connections{}, echo {} B ping-pong; server on CPUs {}, client on {}; load average at the end: {}",
        args.rounds,
        args.window,
        args.conns,
        if args.conns_per_loop { " per loop" } else { " in all" },
        args.size,
        args.server_cpus.as_deref().unwrap_or("all (shared)"),
        args.client_cpus.as_deref().unwrap_or("all (shared)"),
        load.trim()
    ));
    println!("{md}");
    if let Some(dir) = args.markdown.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.markdown, format!("{md}\n"))?;
    Ok(())
}
