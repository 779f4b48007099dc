//! sockloop's benchmark harness (issue 4): peer servers, a one-thread load generator, the
//! runner's measurements and report. The binaries live in `src/bin/`; `bench/run` runs it all.
//!
//! Nothing here runs in `cargo test` or CI beyond clippy.

pub mod loadgen;
pub mod report;
pub mod server;
pub mod sys;
pub mod timers;
