//! Results: one `Sample` per (round, server, scenario), summaries with medians, min-max and
//! ratios to the baseline server of the same round, the Markdown tables and the SVG chart.

use crate::timers::TimerRates;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// One measurement: a fresh server process, one scenario.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Sample {
    /// Round number (servers are interleaved within a round).
    pub round: usize,
    /// Server name.
    pub server: String,
    /// Scenario name.
    pub scenario: String,
    /// Why the measurement failed, if it did.
    pub error: Option<String>,
    /// Round trips (or HTTP requests) per second.
    pub rts_per_s: f64,
    /// Latency percentiles, microseconds.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile (`null` where the tool does not give it).
    pub p999_us: f64,
    /// Server user+system CPU per round trip, microseconds.
    pub cpu_us_per_rt: f64,
    /// Server CPU use over the window (1.0 = one core busy).
    pub server_cpu_util: f64,
    /// Syscalls per round trip from a separate `perf stat` run (syscall tracepoints).
    pub syscalls_per_rt: Option<f64>,
    /// The most frequent syscalls, per round trip (perf).
    pub syscalls: Vec<(String, f64)>,
    /// Syscalls per round trip from a separate `strace -c -f` run (slows the server down,
    /// which changes how often a read-until-EAGAIN server finds more data).
    pub strace_syscalls_per_rt: Option<f64>,
    /// Load generator CPU per round trip, µs (whole runner process).
    pub client_cpu_us_per_rt: f64,
    /// VmHWM growth per idle connection, bytes.
    pub idle_bytes_per_conn: Option<f64>,
}

/// Median with min and max.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Stat {
    /// Median.
    pub median: f64,
    /// Minimum.
    pub min: f64,
    /// Maximum.
    pub max: f64,
}

impl Stat {
    /// `None` for no values.
    pub fn of(values: &[f64]) -> Option<Stat> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        Some(Stat { median, min: v[0], max: v[n - 1] })
    }
}

/// Aggregates of one (server, scenario) over the rounds.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Server name.
    pub server: String,
    /// Scenario name.
    pub scenario: String,
    /// Successful rounds.
    pub ok_rounds: usize,
    /// Errors of failed rounds.
    pub errors: Vec<String>,
    /// Round trips per second.
    pub rts_per_s: Option<Stat>,
    /// Median of per-round ratios to the baseline's round trips per second.
    pub rts_vs_base: Option<f64>,
    /// Latency medians over rounds, µs.
    pub p50_us: Option<f64>,
    /// p99, µs.
    pub p99_us: Option<f64>,
    /// p99.9, µs.
    pub p999_us: Option<f64>,
    /// Server CPU µs per round trip.
    pub cpu_us_per_rt: Option<Stat>,
    /// Median of per-round ratios to the baseline's CPU per round trip.
    pub cpu_vs_base: Option<f64>,
    /// Syscalls per round trip.
    pub syscalls_per_rt: Option<Stat>,
    /// The most frequent syscalls per round trip (from the median round).
    pub syscalls: Vec<(String, f64)>,
    /// Syscalls per round trip under strace.
    pub strace_syscalls_per_rt: Option<Stat>,
    /// Load generator CPU µs per round trip.
    pub client_cpu_us_per_rt: Option<f64>,
    /// Bytes of VmHWM growth per idle connection.
    pub idle_bytes_per_conn: Option<Stat>,
}

/// Everything the runner writes to JSON.
#[derive(Debug, Serialize)]
pub struct Report {
    /// When (UTC, RFC 3339-ish from `date -u`).
    pub date: String,
    /// The command line.
    pub command: String,
    /// `uname -r`, CPU model.
    pub machine: String,
    /// Rounds, window lengths.
    pub settings: String,
    /// Notes: skipped servers and scenarios.
    pub notes: Vec<String>,
    /// Every measurement.
    pub samples: Vec<Sample>,
    /// Aggregates.
    pub summaries: Vec<Summary>,
    /// The timer benchmark.
    pub timers: Option<TimerRates>,
    /// Ratios to the `--baseline-bin-dir` build (empty without it).
    pub vs_baseline: Vec<PairRatio>,
}

/// One server against the same program built from the baseline tree (`--baseline-bin-dir`):
/// the ratio this build / baseline is taken within each round, then summarized over rounds.
#[derive(Clone, Debug, Serialize)]
pub struct PairRatio {
    /// Scenario name.
    pub scenario: String,
    /// The server of this build (`sockloop-epoll`).
    pub server: String,
    /// Its baseline counterpart (`sockloop-epoll-base`).
    pub baseline: String,
    /// Rounds in which both succeeded.
    pub rounds: usize,
    /// Server CPU per round trip, this / baseline.
    pub cpu_us_per_rt: Option<Stat>,
    /// Syscalls per round trip (perf), this / baseline.
    pub syscalls_per_rt: Option<Stat>,
    /// Round trips per second, this / baseline.
    pub rts_per_s: Option<Stat>,
    /// Bytes per idle connection, this / baseline.
    pub idle_bytes_per_conn: Option<Stat>,
}

/// Per-round ratios for each (server, baseline) pair in each scenario.
pub fn pair_ratios(samples: &[Sample], scenarios: &[String], pairs: &[(String, String)]) -> Vec<PairRatio> {
    let mut out = Vec::new();
    for scn in scenarios {
        for (srv, base) in pairs {
            let ok = |name: &str| -> BTreeMap<usize, &Sample> {
                samples
                    .iter()
                    .filter(|s| s.scenario == *scn && s.server == name && s.error.is_none())
                    .map(|s| (s.round, s))
                    .collect()
            };
            let (mine, theirs) = (ok(srv), ok(base));
            let both: Vec<(&Sample, &Sample)> =
                mine.iter().filter_map(|(r, a)| theirs.get(r).map(|b| (*a, *b))).collect();
            if both.is_empty() {
                continue;
            }
            let r = |f: &dyn Fn(&Sample) -> Option<f64>| {
                Stat::of(&both.iter().filter_map(|(a, b)| Some(f(a)? / f(b)?)).collect::<Vec<_>>())
            };
            out.push(PairRatio {
                scenario: scn.clone(),
                server: srv.clone(),
                baseline: base.clone(),
                rounds: both.len(),
                cpu_us_per_rt: r(&|s| Some(s.cpu_us_per_rt)),
                syscalls_per_rt: r(&|s| s.syscalls_per_rt),
                rts_per_s: r(&|s| Some(s.rts_per_s)),
                idle_bytes_per_conn: r(&|s| s.idle_bytes_per_conn),
            });
        }
    }
    out
}

/// The `--baseline-bin-dir` table: one row per scenario and pair.
pub fn pair_table(ratios: &[PairRatio], scenarios: &[(String, String)]) -> String {
    let mut md = String::new();
    if ratios.is_empty() {
        return md;
    }
    let _ = writeln!(md, "\n### This build / baseline (`--baseline-bin-dir`), per-round ratios\n");
    let _ = writeln!(
        md,
        "Each ratio is taken within one round (both servers measured in it), then median (min-max) over rounds; 1.00 is no change.\n"
    );
    let _ = writeln!(md, "| scenario | server / baseline | rounds | CPU µs/RT | syscalls/RT (perf) | RT/s | bytes per idle conn |");
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|");
    let f = |s: Option<Stat>| match s {
        None => "-".to_string(),
        Some(s) => format!("{:.3} ({:.3}-{:.3})", s.median, s.min, s.max),
    };
    for p in ratios {
        let title = scenarios.iter().find(|(n, _)| *n == p.scenario).map_or(p.scenario.as_str(), |(_, t)| t);
        let _ = writeln!(
            md,
            "| {title} | {} / {} | {} | {} | {} | {} | {} |",
            p.server,
            p.baseline,
            p.rounds,
            f(p.cpu_us_per_rt),
            f(p.syscalls_per_rt),
            f(p.rts_per_s),
            f(p.idle_bytes_per_conn),
        );
    }
    md
}

/// Summaries in (scenario order, server order); the baseline is `base_of(scenario)`.
pub fn summarize(
    samples: &[Sample],
    scenarios: &[String],
    servers: &[String],
    base_of: impl Fn(&str) -> &'static str,
) -> Vec<Summary> {
    let mut out = Vec::new();
    for scn in scenarios {
        let base = base_of(scn);
        let base_by_round: BTreeMap<usize, &Sample> = samples
            .iter()
            .filter(|s| s.scenario == *scn && s.server == base && s.error.is_none())
            .map(|s| (s.round, s))
            .collect();
        for srv in servers {
            let mine: Vec<&Sample> =
                samples.iter().filter(|s| s.scenario == *scn && s.server == *srv).collect();
            if mine.is_empty() {
                continue;
            }
            let ok: Vec<&Sample> = mine.iter().copied().filter(|s| s.error.is_none()).collect();
            let col = |f: &dyn Fn(&Sample) -> f64| ok.iter().map(|s| f(s)).collect::<Vec<f64>>();
            let ratio = |f: &dyn Fn(&Sample) -> f64| {
                let r: Vec<f64> =
                    ok.iter().filter_map(|s| base_by_round.get(&s.round).map(|b| f(s) / f(b))).collect();
                Stat::of(&r).map(|s| s.median)
            };
            let sys = Stat::of(&ok.iter().filter_map(|s| s.syscalls_per_rt).collect::<Vec<_>>());
            let top = sys
                .and_then(|st| {
                    ok.iter()
                        .filter(|s| s.syscalls_per_rt.is_some())
                        .min_by(|a, b| {
                            let da = (a.syscalls_per_rt.unwrap_or(0.0) - st.median).abs();
                            let db = (b.syscalls_per_rt.unwrap_or(0.0) - st.median).abs();
                            da.total_cmp(&db)
                        })
                        .map(|s| s.syscalls.clone())
                })
                .unwrap_or_default();
            out.push(Summary {
                server: srv.clone(),
                scenario: scn.clone(),
                ok_rounds: ok.len(),
                errors: mine.iter().filter_map(|s| s.error.clone()).collect(),
                rts_per_s: Stat::of(&col(&|s| s.rts_per_s)),
                rts_vs_base: ratio(&|s| s.rts_per_s),
                p50_us: Stat::of(&col(&|s| s.p50_us)).map(|s| s.median),
                p99_us: Stat::of(&col(&|s| s.p99_us)).map(|s| s.median),
                p999_us: Stat::of(&col(&|s| s.p999_us)).map(|s| s.median),
                cpu_us_per_rt: Stat::of(&col(&|s| s.cpu_us_per_rt)),
                cpu_vs_base: ratio(&|s| s.cpu_us_per_rt),
                syscalls_per_rt: sys,
                syscalls: top,
                strace_syscalls_per_rt: Stat::of(
                    &ok.iter().filter_map(|s| s.strace_syscalls_per_rt).collect::<Vec<_>>(),
                ),
                client_cpu_us_per_rt: Stat::of(&col(&|s| s.client_cpu_us_per_rt)).map(|s| s.median),
                idle_bytes_per_conn: Stat::of(
                    &ok.iter().filter_map(|s| s.idle_bytes_per_conn).collect::<Vec<_>>(),
                ),
            });
        }
    }
    out
}

fn num(x: f64) -> String {
    if !x.is_finite() {
        "-".into()
    } else if x.abs() >= 1000.0 {
        format!("{x:.0}")
    } else if x.abs() >= 100.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn stat(s: Option<Stat>, rounds: usize) -> String {
    match s {
        None => "-".into(),
        Some(s) if rounds <= 1 => num(s.median),
        Some(s) => format!("{} ({}-{})", num(s.median), num(s.min), num(s.max)),
    }
}

fn opt(x: Option<f64>) -> String {
    x.map(num).unwrap_or_else(|| "-".into())
}

fn ratio(x: Option<f64>) -> String {
    x.map(|r| format!("{r:.2}x")).unwrap_or_else(|| "-".into())
}

/// One table per scenario.
pub fn scenario_tables(
    sums: &[Summary],
    scenarios: &[(String, String)],
    base_of: impl Fn(&str) -> &'static str,
) -> String {
    let mut md = String::new();
    for (scn, title) in scenarios {
        let rows: Vec<&Summary> = sums.iter().filter(|s| s.scenario == *scn).collect();
        if rows.is_empty() {
            continue;
        }
        let base = base_of(scn);
        let unit = if scn.starts_with("http") { "req" } else { "RT" };
        let _ = writeln!(md, "\n### {title}\n");
        let _ = writeln!(
            md,
            "| server | {unit}/s | x {base} | p50 µs | p99 µs | p99.9 µs | CPU µs/{unit} | x {base} | syscalls/{unit} (perf) | per {unit} (perf) | syscalls/{unit} (strace) | client CPU µs/{unit} |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|");
        for s in rows {
            if s.ok_rounds == 0 {
                let err = s.errors.first().cloned().unwrap_or_default().replace('|', "/");
                let _ = writeln!(md, "| {} | failed: {err} | | | | | | | | | | |", s.server);
                continue;
            }
            let rounds = s.ok_rounds;
            let top: Vec<String> = s.syscalls.iter().take(5).map(|(n, c)| format!("{n} {c:.2}")).collect();
            let mut name = s.server.clone();
            if !s.errors.is_empty() {
                name.push_str(&format!(" ({} failed)", s.errors.len()));
            }
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                name,
                stat(s.rts_per_s, rounds),
                ratio(s.rts_vs_base),
                opt(s.p50_us),
                opt(s.p99_us),
                opt(s.p999_us),
                stat(s.cpu_us_per_rt, rounds),
                ratio(s.cpu_vs_base),
                stat(s.syscalls_per_rt, rounds),
                top.join(", "),
                stat(s.strace_syscalls_per_rt, rounds),
                opt(s.client_cpu_us_per_rt),
            );
        }
    }
    md
}

/// Idle connections: cost change and memory per connection.
pub fn idle_table(sums: &[Summary], busy: &str, idle: &str, n_idle: usize) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "\n### {n_idle} idle connections next to 50 busy ones\n");
    let _ = writeln!(md, "| server | CPU µs/RT, 50 conns | CPU µs/RT, + idle | change | RT/s change | user-space bytes per idle conn (VmHWM) |");
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|");
    for s in sums.iter().filter(|s| s.scenario == idle) {
        let b = sums.iter().find(|x| x.scenario == busy && x.server == s.server);
        let base_cpu = b.and_then(|b| b.cpu_us_per_rt).map(|x| x.median);
        let base_rts = b.and_then(|b| b.rts_per_s).map(|x| x.median);
        if s.ok_rounds == 0 {
            let err = s.errors.first().cloned().unwrap_or_default().replace('|', "/");
            let _ = writeln!(md, "| {} | {} | failed: {err} | | | |", s.server, opt(base_cpu));
            continue;
        }
        let cpu = s.cpu_us_per_rt.map(|x| x.median);
        let rts = s.rts_per_s.map(|x| x.median);
        let pct = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:+.1}%", (a / b - 1.0) * 100.0),
            _ => "-".into(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            s.server,
            opt(base_cpu),
            opt(cpu),
            pct(cpu, base_cpu),
            pct(rts, base_rts),
            stat(s.idle_bytes_per_conn, s.ok_rounds),
        );
    }
    md
}

/// The timer table.
pub fn timer_table(t: &TimerRates) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "\n### Timers: {} pending (sockloop `Loop::call_later` / `cancel` / `run_with`)\n",
        t.timers
    );
    let _ = writeln!(md, "| operation | per second | ns each |");
    let _ = writeln!(md, "|---|---:|---:|");
    for (name, r) in [
        ("schedule (call_later, 0 -> N pending)", t.schedule_per_s),
        ("cancel (scrambled order, N -> 0)", t.cancel_per_s),
        ("fire (all due, run_with)", t.fire_per_s),
    ] {
        let _ = writeln!(md, "| {name} | {:.0} | {:.0} |", r, 1e9 / r);
    }
    md
}

/// Grouped bars (log scale) of median server CPU µs per round trip, by scenario.
pub fn draw_cpu_chart(
    path: &Path,
    sums: &[Summary],
    scenarios: &[(String, String)],
    servers: &[String],
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let scns: Vec<&(String, String)> =
        scenarios.iter().filter(|(s, _)| sums.iter().any(|x| x.scenario == *s && x.ok_rounds > 0)).collect();
    let srvs: Vec<&String> =
        servers.iter().filter(|v| sums.iter().any(|x| x.server == **v && x.ok_rounds > 0)).collect();
    if scns.is_empty() || srvs.is_empty() {
        return Ok(());
    }
    let value = |scn: &str, srv: &str| {
        sums.iter()
            .find(|x| x.scenario == scn && x.server == srv)
            .and_then(|x| x.cpu_us_per_rt)
            .map(|x| x.median)
    };
    let ymax = sums.iter().filter_map(|x| x.cpu_us_per_rt).map(|x| x.max).fold(1.0f64, f64::max) * 6.0;
    let ymin = 0.3f64;
    let root = SVGBackend::new(path, (1100, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("server CPU µs per round trip, median (log scale; lower is better)", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..scns.len() as f64, (ymin..ymax).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .disable_x_axis()
        .y_desc("CPU µs / round trip")
        .y_label_formatter(&|v| format!("{v:.1}"))
        .draw()?;
    let palette = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    let w = 0.8 / srvs.len() as f64;
    for (j, srv) in srvs.iter().enumerate() {
        let color = palette[j % palette.len()];
        let bars: Vec<Rectangle<(f64, f64)>> = scns
            .iter()
            .enumerate()
            .filter_map(|(i, (scn, _))| {
                let v = value(scn, srv)?;
                let x0 = i as f64 + 0.1 + j as f64 * w;
                Some(Rectangle::new([(x0, ymin), (x0 + w * 0.9, v.max(ymin))], color.filled()))
            })
            .collect();
        chart
            .draw_series(bars)?
            .label(srv.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    for (i, (name, _)) in scns.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(i as f64 + 0.1, ymin));
        root.draw(&Text::new(name.clone(), (px, py + 8), ("sans-serif", 14).into_font()))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperMiddle)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
