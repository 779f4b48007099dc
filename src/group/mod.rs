//! [`LoopGroup`]: many cores, a loop per thread, one server.
//!
//! asyncore's model stays whole for a channel: its handlers run on one thread, with no locks.
//! A group runs N such loops, each on its own thread with its own map (the way nginx workers,
//! glommio executors and envoy do), optionally pinned one per CPU:
//!
//! - `mod.rs`: [`LoopGroup`] and its [`GroupBuilder`]: start the threads, run the same setup
//!   closure on each, join them;
//! - `handle.rs`: [`GroupHandle`] (post a closure into any loop from any thread, reach a
//!   channel on another loop, shut the group down) and [`Member`] (what the setup closure gets);
//! - `listener.rs`: [`SharedListener`], one listening address served by every loop, either one
//!   `SO_REUSEPORT` listener per loop or one acceptor handing connections round-robin
//!   ([`Sharing`]);
//! - `cpus.rs`: the CPUs the process may use, and pinning;
//! - `migrate.rs`: `net.ipv4.tcp_migrate_req`.
//!
//! ```
//! use sockloop::group::{LoopGroup, SharedListener, Sharing};
//! use sockloop::{Channel, Context, Dispatcher, SockAddr, Socket, WithSend};
//! use std::io::{Read, Write};
//!
//! struct Echo;
//! impl Dispatcher for Echo {
//!     fn handle_read(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
//!         let n = cx.channel.recv(cx.scratch)?;
//!         cx.channel.send_all(&cx.scratch[..n])
//!     }
//! }
//! struct Server;
//! impl Dispatcher for Server {
//!     fn handle_accepted(&mut self, sock: Socket, _: SockAddr, cx: &mut Context<'_>) -> std::io::Result<()> {
//!         cx.lp.add(Channel::from(sock), Echo)?;
//!         Ok(())
//!     }
//! }
//!
//! let listener = SharedListener::bind("127.0.0.1:0".parse().unwrap(), 1024, 2, Sharing::ReusePort)?;
//! let addr = listener.local_addr();
//! let l = listener.clone();
//! let group = LoopGroup::builder().threads(2).start(move |lp, member| {
//!     l.attach(lp, member, Server)?; // this loop's listener, this loop's Server
//!     Ok(())
//! })?;
//! let mut client = std::net::TcpStream::connect(addr)?;
//! client.write_all(b"ping")?;
//! let mut back = [0; 4];
//! client.read_exact(&mut back)?;
//! assert_eq!(&back, b"ping");
//! group.handle().shutdown(std::time::Duration::from_secs(1));
//! group.join()?;
//! # Ok::<(), std::io::Error>(())
//! ```

mod cpus;
mod handle;
mod listener;
mod migrate;

pub use cpus::{pin_current_thread, usable_cpus};
pub use handle::{GroupHandle, Member};
pub use listener::{Served, SharedListener, Sharing};
pub use migrate::{enable_tcp_migrate_req, tcp_migrate_req, Migration};

use crate::{Backend, Loop, RunOptions, Waker};
use handle::Slot;
use std::any::Any;
use std::cell::RefCell;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

/// How a [`LoopGroup`] starts: how many loops, on which backend, pinned or not, and whether
/// SIGINT/SIGTERM shut it down.
///
/// ```
/// use sockloop::{Backend, group::LoopGroup};
/// let builder = LoopGroup::builder()
///     .threads(0)                       // one loop per CPU this process may use
///     .backend(Backend::Poll)
///     .pin(true)
///     .shutdown_on_signals(std::time::Duration::from_secs(5));
/// assert_eq!(builder.thread_count(), sockloop::group::usable_cpus().len());
/// ```
#[derive(Clone, Debug)]
pub struct GroupBuilder {
    threads: usize,
    backend: Backend,
    pin: bool,
    signals: Option<Duration>,
    migrate: bool,
}

impl GroupBuilder {
    /// The number of loops; 0 (the default) means one per CPU the process may use
    /// ([`usable_cpus`]).
    ///
    /// ```
    /// assert_eq!(sockloop::group::LoopGroup::builder().threads(3).thread_count(), 3);
    /// ```
    pub fn threads(mut self, n: usize) -> GroupBuilder {
        self.threads = n;
        self
    }

    /// The number of loops [`start`](GroupBuilder::start) will run.
    ///
    /// ```
    /// assert!(sockloop::group::LoopGroup::builder().thread_count() >= 1);
    /// ```
    pub fn thread_count(&self) -> usize {
        if self.threads == 0 {
            usable_cpus().len()
        } else {
            self.threads
        }
    }

    /// The backend of every loop (default [`Backend::Auto`]).
    ///
    /// ```
    /// let b = sockloop::group::LoopGroup::builder().backend(sockloop::Backend::Select);
    /// # let _ = b;
    /// ```
    pub fn backend(mut self, backend: Backend) -> GroupBuilder {
        self.backend = backend;
        self
    }

    /// Pins loop `i` to the `i`-th usable CPU (modulo their number). Off by default: pinning
    /// helps when the loops own the machine, and hurts when something else (a load generator)
    /// shares the cores.
    ///
    /// ```
    /// let b = sockloop::group::LoopGroup::builder().pin(true);
    /// # let _ = b;
    /// ```
    pub fn pin(mut self, pin: bool) -> GroupBuilder {
        self.pin = pin;
        self
    }

    /// Every loop catches SIGINT and SIGTERM and shuts down gracefully with `grace`
    /// ([`Loop::shutdown`]: stop accepting, flush, close what is left at the deadline), so one
    /// signal shuts the whole group down. Each loop registers before the setup closures run,
    /// so a signal after [`start`](GroupBuilder::start) returns never takes the default action.
    ///
    /// ```
    /// let b = sockloop::group::LoopGroup::builder().shutdown_on_signals(std::time::Duration::from_secs(5));
    /// # let _ = b;
    /// ```
    pub fn shutdown_on_signals(mut self, grace: Duration) -> GroupBuilder {
        self.signals = Some(grace);
        self
    }

    /// Sets `net.ipv4.tcp_migrate_req` to 1 at start if it is 0 and writable
    /// ([`enable_tcp_migrate_req`]), so connections queued on a closing `SO_REUSEPORT`
    /// listener move to another loop. Off by default: it changes a setting of the whole
    /// network namespace. Without it, [`SharedListener::retire`] still hands over what is
    /// queued when a loop leaves early.
    ///
    /// ```
    /// let b = sockloop::group::LoopGroup::builder().migrate_requests(true);
    /// # let _ = b;
    /// ```
    pub fn migrate_requests(mut self, on: bool) -> GroupBuilder {
        self.migrate = on;
        self
    }

    /// Starts the loops. On each thread: pin (if asked), create the loop, register the signals,
    /// then run `setup(&mut loop, &member)` to add its channels. Returns once every setup has
    /// succeeded, with every loop running; if any step fails on any loop, the others are
    /// stopped and the error names the loop. Each loop then runs until it is shut down (or
    /// [`stop`](crate::LoopHandle::stop)ped), even with an empty map, so work posted to it
    /// always has a loop to run on.
    ///
    /// ```
    /// let err = sockloop::group::LoopGroup::builder().threads(2).start(|_, m| {
    ///     if m.index() == 1 { Err(std::io::Error::other("no")) } else { Ok(()) }
    /// }).err().unwrap();
    /// assert_eq!(err.to_string(), "loop 1 of 2: setup: no");
    /// ```
    pub fn start<F>(self, setup: F) -> io::Result<LoopGroup>
    where
        F: Fn(&mut Loop, &Member) -> io::Result<()> + Send + Sync + 'static,
    {
        let n = self.thread_count();
        if self.migrate {
            match enable_tcp_migrate_req() {
                Ok(m) => log::info!(target: "sockloop", "tcp_migrate_req: {m:?}"),
                Err(e) => log::warn!(target: "sockloop", "cannot set tcp_migrate_req: {e}"),
            }
        }
        let cpus = usable_cpus();
        let setup = Arc::new(setup);
        let (report_tx, report_rx) = mpsc::channel::<(usize, Report)>();
        let mut threads = Vec::with_capacity(n);
        let mut orders = Vec::with_capacity(n);
        for index in 0..n {
            let (order_tx, order_rx) = mpsc::channel::<Order>();
            let cfg = ThreadConfig {
                index,
                backend: self.backend,
                cpu: self.pin.then(|| cpus[index % cpus.len()]),
                signals: self.signals,
            };
            let (setup, report) = (setup.clone(), report_tx.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("sockloop-{index}"))
                .spawn(move || member_thread(cfg, &*setup, report, order_rx));
            match spawned {
                Ok(t) => {
                    threads.push(t);
                    orders.push(order_tx);
                }
                Err(e) => {
                    abort(orders, threads);
                    return Err(named(index, n, "spawn", e));
                }
            }
        }
        drop(report_tx);
        // Every loop exists and has a waker: build the handle.
        let mut wakers: Vec<Option<Waker>> = (0..n).map(|_| None).collect();
        let mut failure = None;
        for _ in 0..n {
            match report_rx.recv() {
                Ok((i, Report::Ready(Ok(w)))) => wakers[i] = Some(w),
                Ok((i, Report::Ready(Err(e)))) => failure = failure.or(Some(named(i, n, "start", e))),
                Ok((i, Report::SetUp(_))) => unreachable!("loop {i} set up before the handle was sent"),
                Err(_) => failure = failure.or(Some(io::Error::other("a loop thread ended at start"))),
            }
        }
        if let Some(e) = failure {
            abort(orders, threads);
            return Err(e);
        }
        let slots: Vec<Slot> = wakers
            .into_iter()
            .map(|w| Slot { waker: w.expect("every loop reported"), running: AtomicBool::new(true) })
            .collect();
        let handle = GroupHandle { slots: slots.into() };
        for o in &orders {
            let _ = o.send(Order::Setup(handle.clone()));
        }
        for _ in 0..n {
            match report_rx.recv() {
                Ok((_, Report::SetUp(Ok(())))) => {}
                Ok((i, Report::SetUp(Err(e)))) => failure = failure.or(Some(named(i, n, "setup", e))),
                Ok((i, Report::Ready(_))) => unreachable!("loop {i} reported ready twice"),
                Err(_) => failure = failure.or(Some(io::Error::other("a loop thread ended in setup"))),
            }
        }
        if let Some(e) = failure {
            abort(orders, threads);
            return Err(e);
        }
        for o in &orders {
            let _ = o.send(Order::Run);
        }
        Ok(LoopGroup { threads, handle })
    }
}

/// N threads, each running its own [`Loop`] over its own map, serving what the setup closure
/// added (with [`SharedListener`]: one address served by all). Handlers stay single-threaded:
/// a channel lives on one loop; loops talk through the [`GroupHandle`].
///
/// ```
/// use sockloop::group::LoopGroup;
/// let group = LoopGroup::builder().threads(2).start(|lp, member| {
///     lp.call_later(std::time::Duration::ZERO, |_| {}); // each loop adds its own work
///     let _ = member.index();
///     Ok(())
/// })?;
/// assert_eq!(group.len(), 2);
/// group.handle().shutdown(std::time::Duration::from_secs(1));
/// group.join()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct LoopGroup {
    threads: Vec<JoinHandle<io::Result<()>>>,
    handle: GroupHandle,
}

impl LoopGroup {
    /// A builder with the defaults: one loop per usable CPU, [`Backend::Auto`], not pinned, no
    /// signal handling.
    ///
    /// ```
    /// let b = sockloop::group::LoopGroup::builder();
    /// assert_eq!(b.thread_count(), sockloop::group::usable_cpus().len());
    /// ```
    pub fn builder() -> GroupBuilder {
        GroupBuilder { threads: 0, backend: Backend::Auto, pin: false, signals: None, migrate: false }
    }

    /// The number of loops.
    ///
    /// ```
    /// let g = sockloop::group::LoopGroup::builder().threads(1).start(|_, _| Ok(()))?;
    /// assert_eq!(g.len(), 1);
    /// # g.handle().shutdown(std::time::Duration::ZERO); g.join()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.threads.len()
    }

    /// Always false: a group has at least one loop.
    ///
    /// ```
    /// let g = sockloop::group::LoopGroup::builder().threads(1).start(|_, _| Ok(()))?;
    /// assert!(!g.is_empty());
    /// # g.handle().shutdown(std::time::Duration::ZERO); g.join()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.threads.is_empty()
    }

    /// The handle on every loop (`Send + Sync + Clone`).
    ///
    /// ```
    /// let g = sockloop::group::LoopGroup::builder().threads(1).start(|_, _| Ok(()))?;
    /// let h = g.handle();
    /// std::thread::spawn(move || h.shutdown(std::time::Duration::ZERO)).join().unwrap();
    /// g.join()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn handle(&self) -> GroupHandle {
        self.handle.clone()
    }

    /// Waits for every loop's thread to end. A loop whose run failed, or whose thread panicked
    /// outside the handlers (a handler's panic is caught on its loop, reported to its
    /// `handle_error`, and the loop goes on), does not stop the others; once all have ended,
    /// the error names the first loop that failed: `loop I of N: ...`.
    ///
    /// ```
    /// let g = sockloop::group::LoopGroup::builder().threads(2).start(|_, _| Ok(()))?;
    /// g.handle().post(1, |_| panic!("boom"))?; // a posted closure's panic is caught and reported
    /// g.handle().post(1, |lp| lp.shutdown(std::time::Duration::ZERO))?;
    /// g.handle().post(0, |lp| lp.shutdown(std::time::Duration::ZERO))?;
    /// g.join()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn join(self) -> io::Result<()> {
        let n = self.threads.len();
        let mut first = None;
        for (i, t) in self.threads.into_iter().enumerate() {
            let outcome = match t.join() {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => named(i, n, "run", e),
                Err(p) => named(i, n, "thread", io::Error::other(panic_message(&*p))),
            };
            log::error!(target: "sockloop", "{outcome}");
            first = first.or(Some(outcome));
        }
        first.map_or(Ok(()), Err)
    }
}

struct ThreadConfig {
    index: usize,
    backend: Backend,
    cpu: Option<usize>,
    signals: Option<Duration>,
}

enum Report {
    Ready(io::Result<Waker>),
    SetUp(io::Result<()>),
}

enum Order {
    Setup(GroupHandle),
    Run,
}

/// The life of one loop's thread: create, report, set up, report, run, exit hooks.
fn member_thread<F>(
    cfg: ThreadConfig,
    setup: &F,
    report: mpsc::Sender<(usize, Report)>,
    orders: mpsc::Receiver<Order>,
) -> io::Result<()>
where
    F: Fn(&mut Loop, &Member) -> io::Result<()>,
{
    let index = cfg.index;
    let mut lp = match create(&cfg) {
        Ok((lp, waker)) => {
            let _ = report.send((index, Report::Ready(Ok(waker))));
            lp
        }
        Err(e) => {
            let _ = report.send((index, Report::Ready(Err(e))));
            return Ok(()); // the starter reports it
        }
    };
    let Ok(Order::Setup(group)) = orders.recv() else { return Ok(()) };
    let member = Member { index, group, exit: RefCell::new(Vec::new()) };
    let done = catch_unwind(AssertUnwindSafe(|| setup(&mut lp, &member)))
        .unwrap_or_else(|p| Err(io::Error::other(format!("panicked: {}", panic_message(&*p)))));
    let ok = done.is_ok();
    let _ = report.send((index, Report::SetUp(done)));
    if !ok || !matches!(orders.recv(), Ok(Order::Run)) {
        member.group.slots[index].running.store(false, Ordering::Release);
        return Ok(());
    }
    let run = catch_unwind(AssertUnwindSafe(|| lp.run_with(RunOptions::new().until_stopped())));
    member.group.slots[index].running.store(false, Ordering::Release);
    let hooks = std::mem::take(&mut *member.exit.borrow_mut());
    for hook in hooks {
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| hook(&mut lp))) {
            log::error!(target: "sockloop", "loop {index}: an exit hook panicked: {}", panic_message(&*p));
        }
    }
    match run {
        Ok(result) => result,
        Err(p) => Err(io::Error::other(format!("panicked: {}", panic_message(&*p)))),
    }
}

fn create(cfg: &ThreadConfig) -> io::Result<(Loop, Waker)> {
    if let Some(cpu) = cfg.cpu {
        pin_current_thread(cpu).map_err(|e| io::Error::new(e.kind(), format!("pin to CPU {cpu}: {e}")))?;
    }
    let mut lp = Loop::with_backend(cfg.backend)?;
    let waker = lp.waker()?;
    if let Some(grace) = cfg.signals {
        for sig in [libc::SIGINT, libc::SIGTERM] {
            lp.on_signal(sig, move |lp| lp.shutdown(grace))?;
        }
    }
    Ok((lp, waker))
}

/// Stops threads that have not started running (dropping their order channel ends them).
fn abort(orders: Vec<mpsc::Sender<Order>>, threads: Vec<JoinHandle<io::Result<()>>>) {
    drop(orders);
    for t in threads {
        let _ = t.join();
    }
}

fn named(index: usize, n: usize, step: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("loop {index} of {n}: {step}: {e}"))
}

fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic".to_string()
    }
}
