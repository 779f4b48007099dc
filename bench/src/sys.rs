//! The few OS calls the harness needs that std does not offer: CPU affinity, the file
//! descriptor limit, the clock tick, signals. The only `unsafe` in the crate, one call each.
#![allow(unsafe_code)]

use std::io;

/// Pins the calling thread (and threads it starts later) to one CPU.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; zeroed is a valid empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "cpu index out of range"));
    }
    // SAFETY: CPU_SET writes one bit inside `set`; `cpu` was checked against its capacity.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a live cpu_set_t and we pass its exact size; pid 0 is this thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Raises RLIMIT_NOFILE's soft limit to at least `want` (capped by the hard limit); children
/// inherit it. Returns the new soft limit.
pub fn raise_nofile(want: u64) -> io::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a live rlimit the kernel fills in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let target = (want as libc::rlim_t).min(lim.rlim_max);
    if lim.rlim_cur < target {
        lim.rlim_cur = target;
        // SAFETY: `lim` is a live rlimit the kernel only reads.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every target
    Ok(lim.rlim_cur as u64)
}

/// Clock ticks per second, the unit of utime/stime in /proc/PID/stat.
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf takes no pointers.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Sends `sig` to process `pid`.
pub fn kill(pid: u32, sig: i32) -> io::Result<()> {
    // SAFETY: kill takes no pointers; a stale pid at worst gives ESRCH.
    if unsafe { libc::kill(pid as libc::pid_t, sig) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// utime + stime of process `pid` (all threads), in microseconds.
pub fn cpu_micros(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces: fields start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 (index 0); utime is field 14 (index 11), stime 15 (index 12).
    let parse = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    let ticks = parse(11) + parse(12);
    Ok(ticks * 1_000_000 / clock_ticks())
}

/// A `VmXXX:` figure of /proc/PID/status in KiB (`VmHWM`, `VmRSS`).
pub fn vm_kib(pid: u32, key: &str) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    for line in status.lines() {
        if let Some(v) = line.strip_prefix(key).and_then(|r| r.strip_prefix(':')) {
            let kb = v.trim().trim_end_matches("kB").trim();
            return kb.parse().map_err(|_| io::Error::other(format!("bad {key} line: {line}")));
        }
    }
    Err(io::Error::other(format!("{key} not in /proc/{pid}/status")))
}
