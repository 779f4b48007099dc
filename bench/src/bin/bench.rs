//! The benchmark runner (issue 4). Run it through `bench/run` from the repository root.
//!
//! For every round, scenario and server (servers interleaved, order rotated per round): a
//! fresh server process pinned to CPU 0, this process (the load generator) pinned to CPU 1,
//! connections opened and warmed up before the timed window, server CPU from /proc/PID/stat
//! over the window, then a separate short run under `strace -c -f` for syscalls per round trip.
//! Prints Markdown, writes JSON and an SVG chart, then the timer benchmark.

use clap::Parser;
use sockloop_bench::loadgen::Client;
use sockloop_bench::report::{self, Report, Sample, Summary};
use sockloop_bench::server::{self, ServerSpec};
use sockloop_bench::{sys, timers};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "sockloop's benchmark: echo servers (sockloop, mio, tokio, Python asyncore) and HTTP")]
struct Args {
    /// Rounds (servers are interleaved within each round).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// One round, short windows: a smoke run in about two minutes.
    #[arg(long)]
    quick: bool,
    /// Timed window per measurement, seconds (default 3, quick 1).
    #[arg(long)]
    window: Option<f64>,
    /// Warm-up before the window, seconds (default 0.5, quick 0.2).
    #[arg(long)]
    warmup: Option<f64>,
    /// Length of the separate run under strace, seconds (default 1, quick 0.5).
    #[arg(long)]
    strace_secs: Option<f64>,
    /// Skip the strace runs.
    #[arg(long)]
    no_strace: bool,
    /// Skip the perf stat runs (syscall counts without slowing the server).
    #[arg(long)]
    no_perf: bool,
    /// Only these servers (comma-separated names as in the tables; applies to the echo and the
    /// HTTP servers).
    #[arg(long, value_delimiter = ',')]
    servers: Vec<String>,
    /// Only these scenarios (comma-separated: 1x64B,50x64B,500x1KiB,50x64B+5000idle,10x64KiB,http).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Pending timers for the timer benchmark (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    timers: usize,
    /// Where the release binaries are (default: next to this program).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// A second build to compare against, e.g. `main`'s examples built into another target
    /// directory (DIR is its `release/`: DIR/examples/echo_server and DIR/examples/http_server).
    /// Adds the servers `sockloop-epoll-base` and `sockloop-http-base`, measured like
    /// `sockloop-epoll` and `sockloop-http` and interleaved with them in every round, and a
    /// table of per-round ratios (this build / baseline).
    #[arg(long, value_name = "DIR")]
    baseline_bin_dir: Option<PathBuf>,
    /// Python with asyncore (default: pyenv's 3.11.7, else python3).
    #[arg(long)]
    python: Option<PathBuf>,
    /// JSON output.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results/latest.json"))]
    json: PathBuf,
    /// Markdown output (also printed).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results/latest.md"))]
    markdown: PathBuf,
    /// SVG chart of CPU per round trip.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/bench-cpu.svg"))]
    svg: PathBuf,
}

struct Scenario {
    name: &'static str,
    title: &'static str,
    conns: usize,
    size: usize,
    idle: usize,
}

const SCENARIOS: &[Scenario] = &[
    Scenario { name: "1x64B", title: "1 connection x 64 B", conns: 1, size: 64, idle: 0 },
    Scenario { name: "50x64B", title: "50 connections x 64 B", conns: 50, size: 64, idle: 0 },
    Scenario { name: "500x1KiB", title: "500 connections x 1 KiB", conns: 500, size: 1024, idle: 0 },
    Scenario {
        name: "50x64B+5000idle",
        title: "50 connections x 64 B + 5000 idle connections",
        conns: 50,
        size: 64,
        idle: 5000,
    },
    Scenario { name: "10x64KiB", title: "10 connections x 64 KiB", conns: 10, size: 64 * 1024, idle: 0 },
];
const HTTP: &str = "http-wrk-50";

struct Timing {
    window: Duration,
    warmup: Duration,
    strace: Option<Duration>,
    perf: Option<Duration>,
}

fn base_of(scenario: &str) -> &'static str {
    if scenario.starts_with("http") {
        "hyper"
    } else {
        "mio"
    }
}

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn default_python() -> PathBuf {
    let root = sh("pyenv", &["root"]);
    let p = PathBuf::from(root).join("versions/3.11.7/bin/python3.11");
    if p.exists() {
        p
    } else {
        PathBuf::from("python3")
    }
}

fn has_asyncore(python: &Path) -> Result<(), String> {
    match Command::new(python).args(["-W", "ignore", "-c", "import asyncore"]).output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(_) => Err(format!("{} has no asyncore (removed in Python 3.12)", python.display())),
        Err(e) => Err(format!("{}: {e}", python.display())),
    }
}

/// The servers built from the `--baseline-bin-dir` tree are named like their counterpart plus this.
const BASE_SUFFIX: &str = "-base";

fn servers(bin: &Path, python: &Path, baseline: Option<&Path>) -> Vec<ServerSpec> {
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let exists = |p: &Path| if p.exists() { None } else { Some(format!("{} not built", p.display())) };
    let echo = bin.join("examples/echo_server");
    let mut v = Vec::new();
    for be in ["epoll", "uring", "poll", "select"] {
        v.push(ServerSpec {
            name: format!("sockloop-{be}"),
            argv: vec![s(&echo), "--backend".into(), be.into(), "--quiet".into()],
            unavailable: exists(&echo),
        });
        if let Some(base) = baseline.filter(|_| be == "epoll") {
            let echo = base.join("examples/echo_server");
            v.push(ServerSpec {
                name: format!("sockloop-{be}{BASE_SUFFIX}"),
                argv: vec![s(&echo), "--backend".into(), be.into(), "--quiet".into()],
                unavailable: exists(&echo),
            });
        }
    }
    let mio = bin.join("mio_echo");
    v.push(ServerSpec { name: "mio".into(), argv: vec![s(&mio)], unavailable: exists(&mio) });
    let tokio = bin.join("tokio_echo");
    v.push(ServerSpec { name: "tokio-ct".into(), argv: vec![s(&tokio)], unavailable: exists(&tokio) });
    v.push(ServerSpec {
        name: "tokio-mt".into(),
        argv: vec![s(&tokio), "--multi-thread".into()],
        unavailable: exists(&tokio),
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/py/asyncore_echo.py");
    let py_ok = has_asyncore(python).err();
    for (name, extra) in [("python-asyncore-poll", Some("--use-poll")), ("python-asyncore-select", None)] {
        let mut argv = vec![s(python), "-W".into(), "ignore".into(), script.into(), "--quiet".into()];
        argv.extend(extra.map(String::from));
        v.push(ServerSpec { name: name.into(), argv, unavailable: py_ok.clone() });
    }
    v
}

fn http_servers(bin: &Path, python: &Path, baseline: Option<&Path>) -> (Vec<ServerSpec>, Option<String>) {
    let http = bin.join("examples/http_server");
    let hyper = bin.join("hyper_hello");
    let wrk = Command::new("wrk").arg("--version").output().is_ok();
    let mut why = Vec::new();
    if !wrk {
        why.push("wrk is not installed (bench/setup.sh installs it)".to_string());
    }
    if !http.exists() {
        why.push(format!("{} does not exist yet (issue 3)", http.display()));
    }
    let mut specs = vec![ServerSpec {
        name: "sockloop-http".into(),
        argv: vec![http.to_string_lossy().into_owned()],
        unavailable: None,
    }];
    if let Some(base) = baseline {
        let http = base.join("examples/http_server");
        specs.push(ServerSpec {
            name: format!("sockloop-http{BASE_SUFFIX}"),
            argv: vec![http.to_string_lossy().into_owned()],
            unavailable: (!http.exists()).then(|| format!("{} not built", http.display())),
        });
    }
    specs.extend([
        ServerSpec {
            name: "hyper".into(),
            argv: vec![hyper.to_string_lossy().into_owned()],
            unavailable: None,
        },
        ServerSpec {
            name: "python-asynchat-http".into(),
            argv: vec![
                python.to_string_lossy().into_owned(),
                "-W".into(),
                "ignore".into(),
                concat!(env!("CARGO_MANIFEST_DIR"), "/py/asynchat_http.py").into(),
                "--use-poll".into(),
            ],
            unavailable: has_asyncore(python).err(),
        },
    ]);
    (specs, if why.is_empty() { None } else { Some(why.join("; ")) })
}

fn percentile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * q) as usize).min(sorted.len() - 1);
    sorted[i] as f64 / 1000.0
}

fn strace_file(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("sockloop-bench-strace-{}-{tag}.txt", std::process::id()))
}

fn measure_echo(spec: &ServerSpec, scn: &Scenario, t: &Timing, round: usize) -> Sample {
    let mut sample =
        Sample { round, server: spec.name.clone(), scenario: scn.name.into(), ..Sample::default() };
    let mut srv = match server::start(spec, 0) {
        Ok(s) => s,
        Err(e) => {
            sample.error = Some(e.to_string());
            return sample;
        }
    };
    let pid = srv.pid;
    let result = (|| -> io::Result<()> {
        let mut cl = Client::new(srv.addr)?;
        cl.open(scn.conns, scn.size, true, Duration::from_secs(30))?;
        if scn.idle > 0 {
            cl.run(t.warmup, false, None)?;
            let before = sys::vm_kib(pid, "VmHWM")?;
            cl.open(scn.idle, 64, false, Duration::from_secs(60))?;
            std::thread::sleep(Duration::from_millis(100));
            let after = sys::vm_kib(pid, "VmHWM")?;
            sample.idle_bytes_per_conn = Some(after.saturating_sub(before) as f64 * 1024.0 / scn.idle as f64);
        }
        cl.run(t.warmup, false, None)?;
        let me = std::process::id();
        let client0 = sys::cpu_micros(me)?;
        let mut st = cl.run(t.window, true, Some(pid))?;
        let client1 = sys::cpu_micros(me)?;
        let secs = st.elapsed.as_secs_f64();
        let rts = st.round_trips.max(1) as f64;
        sample.rts_per_s = st.round_trips as f64 / secs;
        if let Some((c0, c1)) = st.cpu_us {
            let used = c1.saturating_sub(c0) as f64;
            sample.cpu_us_per_rt = used / rts;
            sample.server_cpu_util = used / (secs * 1e6);
        }
        sample.client_cpu_us_per_rt = client1.saturating_sub(client0) as f64 / rts;
        st.latencies_ns.sort_unstable();
        sample.p50_us = percentile(&st.latencies_ns, 0.50);
        sample.p99_us = percentile(&st.latencies_ns, 0.99);
        sample.p999_us = percentile(&st.latencies_ns, 0.999);
        if let Some(d) = t.strace {
            let tracer = server::strace_attach(pid, strace_file(&spec.name))?;
            let run = cl.run(d, false, None);
            let (total, calls) = tracer.finish()?;
            let n = run?.round_trips_total.max(1) as f64;
            sample.strace_syscalls_per_rt = Some(total as f64 / n);
            let _ = calls;
        }
        if let Some(d) = t.perf {
            let counter = server::perf_attach(pid, strace_file(&format!("{}-perf", spec.name)))?;
            let run = cl.run(d, false, None);
            let (total, calls) = counter.finish()?;
            let n = run?.round_trips_total.max(1) as f64;
            sample.syscalls_per_rt = Some(total as f64 / n);
            sample.syscalls = calls.into_iter().take(6).map(|(name, c)| (name, c as f64 / n)).collect();
        }
        Ok(())
    })();
    if let Err(e) = result {
        std::thread::sleep(Duration::from_millis(100));
        let why = srv.exited().map(|x| format!("; {x}")).unwrap_or_default();
        sample.error = Some(format!("{e}{why}"));
    }
    srv.stop();
    sample
}

struct Wrk {
    requests: u64,
    rps: f64,
    p50_us: f64,
    p99_us: f64,
}

fn parse_wrk_time(s: &str) -> f64 {
    let units = [("us", 1.0), ("ms", 1e3), ("s", 1e6), ("m", 60e6)];
    for (u, k) in units {
        if let Some(v) = s.strip_suffix(u).and_then(|v| v.parse::<f64>().ok()) {
            return v * k;
        }
    }
    f64::NAN
}

fn wrk(url: &str, secs: u64) -> io::Result<Wrk> {
    let out = Command::new("taskset")
        .args(["-c", "1", "wrk", "-t1", "-c50", &format!("-d{secs}s"), "--latency", url])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(io::Error::other(format!("wrk failed: {}", String::from_utf8_lossy(&out.stderr))));
    }
    let mut w = Wrk { requests: 0, rps: f64::NAN, p50_us: f64::NAN, p99_us: f64::NAN };
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["Requests/sec:", v, ..] => w.rps = v.parse().unwrap_or(f64::NAN),
            [n, "requests", "in", ..] => w.requests = n.parse().unwrap_or(0),
            ["50%", v] => w.p50_us = parse_wrk_time(v),
            ["99%", v] => w.p99_us = parse_wrk_time(v),
            _ => {}
        }
    }
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        return Err(io::Error::other(format!("wrk reported errors: {}", text.replace('\n', " "))));
    }
    Ok(w)
}

fn measure_http(spec: &ServerSpec, t: &Timing, round: usize) -> Sample {
    let mut sample = Sample { round, server: spec.name.clone(), scenario: HTTP.into(), ..Sample::default() };
    let mut srv = match server::start(spec, 0) {
        Ok(s) => s,
        Err(e) => {
            sample.error = Some(e.to_string());
            return sample;
        }
    };
    let pid = srv.pid;
    let url = format!("http://{}/", srv.addr);
    let secs = t.window.as_secs().max(1);
    let result = (|| -> io::Result<()> {
        wrk(&url, 1)?;
        let c0 = sys::cpu_micros(pid)?;
        let w = wrk(&url, secs)?;
        let c1 = sys::cpu_micros(pid)?;
        sample.rts_per_s = w.rps;
        sample.p50_us = w.p50_us;
        sample.p99_us = w.p99_us;
        sample.p999_us = f64::NAN; // wrk --latency stops at p99
        sample.client_cpu_us_per_rt = f64::NAN; // wrk is not this process
        let used = c1.saturating_sub(c0) as f64;
        sample.cpu_us_per_rt = used / w.requests.max(1) as f64;
        sample.server_cpu_util = used / (secs as f64 * 1e6);
        if t.strace.is_some() {
            let tracer = server::strace_attach(pid, strace_file(&spec.name))?;
            let run = wrk(&url, 1);
            let (total, _) = tracer.finish()?;
            sample.strace_syscalls_per_rt = Some(total as f64 / run?.requests.max(1) as f64);
        }
        if t.perf.is_some() {
            let counter = server::perf_attach(pid, strace_file(&format!("{}-perf", spec.name)))?;
            let run = wrk(&url, 1);
            let (total, calls) = counter.finish()?;
            let n = run?.requests.max(1) as f64;
            sample.syscalls_per_rt = Some(total as f64 / n);
            sample.syscalls = calls.into_iter().take(6).map(|(name, c)| (name, c as f64 / n)).collect();
        }
        Ok(())
    })();
    if let Err(e) = result {
        let why = srv.exited().map(|x| format!("; {x}")).unwrap_or_default();
        sample.error = Some(format!("{e}{why}"));
    }
    srv.stop();
    sample
}

fn targets(sums: &[Summary]) -> String {
    let get = |scn: &str, srv: &str| sums.iter().find(|s| s.scenario == scn && s.server == srv);
    let ep = "sockloop-epoll";
    let mut md = String::from(
        "\n### Issue 4's targets for sockloop-epoll\n\n| target | measured | met |\n|---|---:|:---:|\n",
    );
    let mut row = |name: &str, v: Option<f64>, show: &dyn Fn(f64) -> String, ok: &dyn Fn(f64) -> bool| {
        let (m, y) = match v {
            Some(v) => (show(v), if ok(v) { "yes" } else { "**no**" }),
            None => ("-".into(), "-"),
        };
        md.push_str(&format!("| {name} | {m} | {y} |\n"));
    };
    let x = |v: f64| format!("{v:.2}x mio");
    for scn in ["50x64B", "500x1KiB"] {
        let v = get(scn, ep).and_then(|s| s.cpu_vs_base);
        row(&format!("CPU per round trip <= 0.9x mio, {scn}"), v, &x, &|v| v <= 0.9);
    }
    for scn in ["50x64B", "500x1KiB"] {
        let v = get(scn, ep).and_then(|s| s.syscalls_per_rt).map(|s| s.median);
        row(&format!("syscalls per round trip <= 2.05, {scn}"), v, &|v| format!("{v:.3}"), &|v| v <= 2.05);
    }
    let busy = get("50x64B", ep).and_then(|s| s.cpu_us_per_rt).map(|s| s.median);
    let idle = get("50x64B+5000idle", ep).and_then(|s| s.cpu_us_per_rt).map(|s| s.median);
    let change = busy.zip(idle).map(|(b, i)| (i / b - 1.0) * 100.0);
    row("5000 idle connections change CPU per round trip by < 5%", change, &|v| format!("{v:+.1}%"), &|v| {
        v.abs() < 5.0
    });
    let mem = get("50x64B+5000idle", ep).and_then(|s| s.idle_bytes_per_conn).map(|s| s.median / 1024.0);
    row("<= 0.25 KiB user-space memory per idle connection", mem, &|v| format!("{v:.3} KiB"), &|v| v <= 0.25);
    let bulk = get("10x64KiB", ep).and_then(|s| s.rts_vs_base);
    row("10 x 64 KiB round trips/s >= 1.0x mio", bulk, &x, &|v| v >= 1.0);
    md
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let quick = args.quick;
    let rounds = if quick { 1 } else { args.rounds.max(1) };
    let secs = |v: Option<f64>, full: f64, q: f64| {
        Duration::from_secs_f64(v.unwrap_or(if quick { q } else { full }))
    };
    let timing = Timing {
        window: secs(args.window, 3.0, 1.0),
        warmup: secs(args.warmup, 0.5, 0.2),
        strace: (!args.no_strace).then(|| secs(args.strace_secs, 1.0, 0.5)),
        perf: (!args.no_perf).then(|| secs(args.strace_secs, 1.0, 0.5)),
    };
    sys::pin_to_cpu(1)?;
    let nofile = sys::raise_nofile(16_384)?;
    let bin = match &args.bin_dir {
        Some(b) => b.clone(),
        None => std::env::current_exe()?.parent().map(Path::to_path_buf).unwrap_or_default(),
    };
    let python = args.python.clone().unwrap_or_else(default_python);
    let want = |name: &str, list: &[String]| list.is_empty() || list.iter().any(|x| x == name);
    let mut notes = vec![format!("RLIMIT_NOFILE raised to {nofile}")];
    let mut specs = Vec::new();
    let baseline = args.baseline_bin_dir.as_deref();
    if let Some(b) = baseline {
        notes.push(format!("baseline (`-base` servers) from {}", b.display()));
    }
    for s in servers(&bin, &python, baseline) {
        if !want(&s.name, &args.servers) {
            continue;
        }
        match &s.unavailable {
            Some(why) => notes.push(format!("{}: skipped: {why}", s.name)),
            None => specs.push(s),
        }
    }
    let scns: Vec<&Scenario> = SCENARIOS.iter().filter(|s| want(s.name, &args.scenarios)).collect();
    let (all_http, http_skip) = http_servers(&bin, &python, baseline);
    let mut http_specs = Vec::new();
    for s in all_http {
        if !want(&s.name, &args.servers) {
            continue;
        }
        match &s.unavailable {
            Some(why) => notes.push(format!("{}: skipped: {why}", s.name)),
            None => http_specs.push(s),
        }
    }
    let run_http = want("http", &args.scenarios) || want(HTTP, &args.scenarios);
    if run_http {
        if let Some(why) = &http_skip {
            notes.push(format!("HTTP scenario skipped: {why}"));
        } else if http_specs.is_empty() {
            notes.push("HTTP scenario skipped: --servers names no HTTP server".into());
        }
    }
    let loadavg = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_string();
    notes.push(format!("load average before: {}", loadavg()));
    let mut samples: Vec<Sample> = Vec::new();
    let started = Instant::now();
    for round in 0..rounds {
        for scn in &scns {
            let n = specs.len().max(1);
            for k in 0..specs.len() {
                let spec = &specs[(k + round) % n];
                let s = measure_echo(spec, scn, &timing, round);
                eprintln!(
                    "[{:>5.0}s] round {} {:<16} {:<24} {}",
                    started.elapsed().as_secs_f64(),
                    round + 1,
                    scn.name,
                    spec.name,
                    match &s.error {
                        Some(e) => format!("FAILED: {e}"),
                        None => format!(
                            "{:.0} RT/s, {:.2} µs CPU/RT (client {:.2}), {} syscalls/RT (strace {})",
                            s.rts_per_s,
                            s.cpu_us_per_rt,
                            s.client_cpu_us_per_rt,
                            s.syscalls_per_rt.map(|v| format!("{v:.2}")).unwrap_or("-".into()),
                            s.strace_syscalls_per_rt.map(|v| format!("{v:.2}")).unwrap_or("-".into())
                        ),
                    }
                );
                samples.push(s);
            }
        }
        if run_http && http_skip.is_none() {
            for k in 0..http_specs.len() {
                let spec = &http_specs[(k + round) % http_specs.len()];
                let s = measure_http(spec, &timing, round);
                eprintln!("round {} {HTTP} {}: {:?} req/s {:?}", round + 1, spec.name, s.rts_per_s, s.error);
                samples.push(s);
            }
        }
    }
    let mut scn_names: Vec<(String, String)> =
        scns.iter().map(|s| (s.name.to_string(), s.title.to_string())).collect();
    scn_names.push((HTTP.into(), "HTTP: wrk, 50 keep-alive connections".into()));
    let names: Vec<String> = specs.iter().chain(http_specs.iter()).map(|s| s.name.clone()).collect();
    let scn_only: Vec<String> = scn_names.iter().map(|s| s.0.clone()).collect();
    let sums = report::summarize(&samples, &scn_only, &names, base_of);
    let pairs: Vec<(String, String)> = names
        .iter()
        .filter_map(|b| b.strip_suffix(BASE_SUFFIX).filter(|s| names.iter().any(|n| n == s)))
        .map(|s| (s.to_string(), format!("{s}{BASE_SUFFIX}")))
        .collect();
    let vs_baseline = report::pair_ratios(&samples, &scn_only, &pairs);

    notes.push(format!("load average after the echo and HTTP runs: {}", loadavg()));
    let timer_rates = if args.timers > 0 {
        eprintln!("timer benchmark: {} timers", args.timers);
        Some(timers::run(args.timers)?)
    } else {
        None
    };

    let date = sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let machine = format!("{cpu}, {} CPUs, Linux {}", sh("nproc", &["--all"]), sh("uname", &["-r"]));
    let settings = format!(
        "{rounds} round(s); window {:.1} s, warm-up {:.1} s, separate strace and perf runs {}; server on CPU 0, load generator on CPU 1",
        timing.window.as_secs_f64(),
        timing.warmup.as_secs_f64(),
        timing.strace.map(|d| format!("{:.1} s", d.as_secs_f64())).unwrap_or("off".into())
    );
    let mut md =
        format!("## Results\n\n- date: {date}\n- machine: {machine}\n- command: `{command}`\n- {settings}\n");
    for n in &notes {
        md.push_str(&format!("- note: {n}\n"));
    }
    md.push_str(
        "\nMedians over rounds, (min-max) when there are several; `x mio` is the median of per-round \
         ratios to mio from the same round (to hyper for HTTP). Latency is the load generator's \
         round-trip time. CPU is the server's user+system time (/proc/PID/stat) over the window. \
         Syscalls per round trip come from two separate short runs: `perf stat` on the syscall \
         tracepoints (does not slow the server; the figure used for the targets) and `strace -c -f` \
         (stops the server at every call, so the next message is often already there when a \
         read-until-EAGAIN server reads again: it under-counts those EAGAIN reads).\n",
    );
    md.push_str(&report::pair_table(&vs_baseline, &scn_names));
    md.push_str(&report::scenario_tables(&sums, &scn_names, base_of));
    if scns.iter().any(|s| s.idle > 0) {
        md.push_str(&report::idle_table(&sums, "50x64B", "50x64B+5000idle", 5000));
    }
    if specs.iter().any(|s| s.name == "sockloop-epoll") {
        md.push_str(&targets(&sums));
    }
    if let Some(t) = &timer_rates {
        md.push_str(&report::timer_table(t));
    }
    println!("{md}");
    io::stdout().flush()?;
    if let Some(dir) = args.markdown.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.markdown, &md)?;
    let rep = Report {
        date,
        command,
        machine,
        settings,
        notes,
        samples,
        summaries: sums,
        timers: timer_rates,
        vs_baseline,
    };
    if let Some(dir) = args.json.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.json, serde_json::to_string_pretty(&rep)?)?;
    if let Some(dir) = args.svg.parent() {
        std::fs::create_dir_all(dir)?;
    }
    report::draw_cpu_chart(&args.svg, &rep.summaries, &scn_names, &names)?;
    eprintln!("wrote {}, {}, {}", args.json.display(), args.markdown.display(), args.svg.display());
    Ok(())
}
