//! Issue 6's timer benchmark: schedule, cancel and fire rates with a million pending timers,
//! through sockloop's public API (`Loop::call_later`, `Loop::cancel`, `Loop::run_with`).

use serde::Serialize;
use sockloop::{Loop, RunOptions};
use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Operations per second for `n` timers.
#[derive(Clone, Debug, Serialize)]
pub struct TimerRates {
    /// How many timers each phase handled.
    pub timers: usize,
    /// `call_later` per second, growing the set from 0 to `timers` pending.
    pub schedule_per_s: f64,
    /// `cancel` per second, in scrambled order, from `timers` pending down to 0.
    pub cancel_per_s: f64,
    /// Timers fired per second by `run_with`, all of them due.
    pub fire_per_s: f64,
    /// Loop passes the fire phase took.
    pub fire_passes: usize,
}

/// A permutation of 0..n: i -> i * step mod n with `step` coprime to n.
fn scrambled(n: usize) -> impl Iterator<Item = usize> {
    let step = [7919usize, 104_729, 1_299_709].into_iter().find(|s| gcd(*s, n) == 1).unwrap_or(1);
    (0..n).map(move |i| (i * step) % n.max(1))
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Runs the three phases with `n` timers.
pub fn run(n: usize) -> io::Result<TimerRates> {
    let mut lp = Loop::new()?;
    let fired = Rc::new(Cell::new(0usize));

    // Schedule: deadlines an hour out, spread so the heap does real work.
    let t = Instant::now();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let f = fired.clone();
        let delay = Duration::from_secs(3600) + Duration::from_micros(((i * 7919) % n) as u64);
        ids.push(lp.call_later(delay, move |_| f.set(f.get() + 1)));
    }
    let schedule = n as f64 / t.elapsed().as_secs_f64();
    assert_eq!(lp.pending_timers(), n);

    // Cancel, in an order unrelated to insertion and to deadline.
    let t = Instant::now();
    let mut cancelled = 0;
    for i in scrambled(n) {
        cancelled += usize::from(lp.cancel(ids[i]));
    }
    let cancel = n as f64 / t.elapsed().as_secs_f64();
    assert_eq!(cancelled, n);
    assert_eq!(lp.pending_timers(), 0);
    drop(ids);

    // Fire: n timers due within 20 ms; wait until all are due, then time the passes.
    let base = Instant::now();
    for i in 0..n {
        let f = fired.clone();
        let at = base + Duration::from_micros(((i * 7919) % n) as u64 * 20_000 / n as u64);
        lp.call_at(at, move |_| f.set(f.get() + 1));
    }
    std::thread::sleep((base + Duration::from_millis(25)).saturating_duration_since(Instant::now()));
    let t = Instant::now();
    let mut passes = 0;
    while fired.get() < n && passes < 1000 {
        lp.run_with(RunOptions::new().timeout(Duration::ZERO).count(1))?;
        passes += 1;
    }
    let fire = n as f64 / t.elapsed().as_secs_f64();
    assert_eq!(fired.get(), n, "every timer fires once");
    Ok(TimerRates {
        timers: n,
        schedule_per_s: schedule,
        cancel_per_s: cancel,
        fire_per_s: fire,
        fire_passes: passes,
    })
}
