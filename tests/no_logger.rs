//! With no `log` logger installed (this test binary never installs one), the default
//! `handle_error` still says what happened, on stderr, once per error (issue 11: a refused
//! connect printed nothing and the client exited 0).
//!
//! The test runs its scenario in a child process of this binary, so that it can read the
//! child's stderr: the parent re-executes itself with `--exact <this test> --nocapture` and
//! [`CHILD`] set, and the child runs the loop.

mod support;

use sockloop::{Backend, Dispatcher};
use std::io::Read;
use std::process::{Command, Stdio};
use support::*;

/// Set in the child's environment: run the scenario instead of spawning.
const CHILD: &str = "SOCKLOOP_NO_LOGGER_CHILD";

/// A client that overrides nothing that matters here: its `handle_error` is the default one.
struct Client;

impl Dispatcher for Client {
    fn writable(&self) -> bool {
        false
    }
}

/// The child: a connect to a refused loopback port reaches the default `handle_error`, which
/// closes the channel; a few more passes show nothing is reported twice.
fn refused_connect_child(backend: Backend) {
    assert_eq!(log::max_level(), log::LevelFilter::Off, "a logger is installed in the child");
    let mut lp = new_loop(backend);
    let (listener, ep) = std_listener(Family::V4);
    drop(listener); // the port is closed: connects are refused
    let t = lp.add(connecting_channel(&ep), Client).unwrap();
    drive(&mut lp, "the refused connect to close the channel", |lp| !lp.contains(t));
    for _ in 0..5 {
        lp.poll(Some(std::time::Duration::from_millis(10))).unwrap();
    }
    assert!(lp.is_empty());
}

fn refused_connect_is_reported_on_stderr_without_a_logger(backend: Backend) {
    if std::env::var_os(CHILD).is_some() {
        return refused_connect_child(backend);
    }
    let me = format!("refused_connect_is_reported_on_stderr_without_a_logger::{}", backend.name());
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &me, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("re-run this test binary");
    let mut guard = ChildGuard(Some(child));
    // The child's output is small (well within a pipe's buffer): wait for it to exit (killed on
    // failure by the guard), then read both pipes.
    let status = guard.wait_exit(DEADLINE);
    let (mut out, mut err) = (String::new(), String::new());
    guard.child().stdout.take().unwrap().read_to_string(&mut out).expect("read the child's stdout");
    guard.child().stderr.take().unwrap().read_to_string(&mut err).expect("read the child's stderr");
    assert!(status.success(), "the child failed: {status:?}\n--- stdout\n{out}\n--- stderr\n{err}");
    assert!(out.contains("1 passed"), "the child did not run its test:\n{out}");

    let reports: Vec<&str> = err.lines().filter(|l| l.contains("uncaptured error in")).collect();
    assert_eq!(reports.len(), 1, "one report per error, on stderr; the child's stderr:\n{err}");
    let line = reports[0];
    assert!(line.starts_with("sockloop: uncaptured error in Client::handle_connect"), "{line}");
    assert!(
        line.to_lowercase().contains("refused"),
        "the report does not say the connect was refused: {line}"
    );
}

backend_tests!(refused_connect_is_reported_on_stderr_without_a_logger);
