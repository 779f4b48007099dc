//! `net.ipv4.tcp_migrate_req` (Linux 5.14+): whether the kernel moves the connections queued
//! on a closing `SO_REUSEPORT` listener to another listener of the same port.

use std::io;

const PATH: &str = "/proc/sys/net/ipv4/tcp_migrate_req";

/// What the kernel does with the connections queued on an `SO_REUSEPORT` listener that closes.
///
/// ```
/// use sockloop::group::Migration;
/// assert_ne!(Migration::Unsupported, Migration::On);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Migration {
    /// `tcp_migrate_req` is 1: the kernel hands them (and half-open ones) to another listener.
    On,
    /// `tcp_migrate_req` is 0: they are reset, unless the group drains the listener first
    /// ([`SharedListener::retire`](super::SharedListener::retire) does).
    Off,
    /// The kernel has no such setting (before 5.14, or not Linux).
    Unsupported,
}

/// Reads `net.ipv4.tcp_migrate_req` for this network namespace.
///
/// ```
/// let m = sockloop::group::tcp_migrate_req();
/// assert!(matches!(m, sockloop::group::Migration::On | sockloop::group::Migration::Off | sockloop::group::Migration::Unsupported));
/// ```
pub fn tcp_migrate_req() -> Migration {
    match std::fs::read_to_string(PATH) {
        Ok(s) if s.trim() == "0" => Migration::Off,
        Ok(_) => Migration::On,
        Err(_) => Migration::Unsupported,
    }
}

/// Sets `net.ipv4.tcp_migrate_req` to 1 if it is 0 and writable (root in the namespace), and
/// returns what is in force afterwards. This changes the setting for the whole network
/// namespace, for every program in it, and it outlives the process: a group does it only when
/// asked ([`GroupBuilder::migrate_requests`](super::GroupBuilder::migrate_requests)).
///
/// ```no_run
/// match sockloop::group::enable_tcp_migrate_req() {
///     Ok(sockloop::group::Migration::On) => println!("queued connections migrate"),
///     Ok(other) => println!("no migration: {other:?}"),
///     Err(e) => println!("cannot set tcp_migrate_req: {e}"),
/// }
/// ```
pub fn enable_tcp_migrate_req() -> io::Result<Migration> {
    match tcp_migrate_req() {
        Migration::Off => {
            std::fs::write(PATH, "1\n")?;
            Ok(tcp_migrate_req())
        }
        other => Ok(other),
    }
}
