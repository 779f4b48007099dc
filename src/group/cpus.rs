//! The CPUs this process may run on, and pinning a loop's thread to one of them (through
//! rustix's safe `sched_getaffinity`/`sched_setaffinity`, no `unsafe`).

use std::io;

/// The CPUs the calling thread may run on (its affinity mask, so a `taskset` or a cgroup's
/// cpuset is honoured), in increasing order. Never empty: if the mask cannot be read, CPU 0
/// alone.
///
/// ```
/// let cpus = sockloop::group::usable_cpus();
/// assert!(!cpus.is_empty());
/// assert!(cpus.windows(2).all(|w| w[0] < w[1]));
/// ```
pub fn usable_cpus() -> Vec<usize> {
    match rustix::thread::sched_getaffinity(None) {
        Ok(set) => {
            let cpus: Vec<usize> = (0..rustix::thread::CpuSet::MAX_CPU).filter(|&c| set.is_set(c)).collect();
            if cpus.is_empty() {
                vec![0]
            } else {
                cpus
            }
        }
        Err(_) => vec![0],
    }
}

/// Pins the calling thread to `cpu` alone.
///
/// ```
/// let first = sockloop::group::usable_cpus()[0];
/// std::thread::spawn(move || sockloop::group::pin_current_thread(first)).join().unwrap()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    if cpu >= rustix::thread::CpuSet::MAX_CPU {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("no CPU {cpu}")));
    }
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set).map_err(io::Error::from)
}
