//! [`Waker`]: wakes a loop from another thread and runs closures on it.

use crate::poller::SelectorWaker;
use crate::Loop;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce(&mut Loop) + Send>;

/// The closures posted to a loop, and whether a wake is already on its way.
#[derive(Default)]
pub(crate) struct Jobs {
    /// A wake is already on its way: later wakes need no syscall until the loop takes it.
    pending: AtomicBool,
    queue: Mutex<Vec<Job>>,
}

impl Jobs {
    /// Called by the loop when the waker fired: re-arms and hands over the queued jobs.
    pub fn take(&self, into: &mut Vec<Job>) {
        self.pending.store(false, Ordering::Release);
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::swap(&mut *q, into);
    }
}

/// A `Send + Sync + Clone` handle that wakes its [`Loop`] from any thread and runs closures on
/// the loop's thread, in the order each thread posted them (asyncio's
/// `call_soon_threadsafe`). An eventfd on Linux: a wake costs the caller one `write` (none if a
/// wake is already pending) and the loop nothing with epoll.
///
/// ```
/// use std::sync::{Arc, atomic::{AtomicUsize, Ordering}};
/// let mut lp = sockloop::Loop::new()?;
/// let waker = lp.waker()?;
/// let seen = Arc::new(AtomicUsize::new(0));
/// let s = seen.clone();
/// std::thread::spawn(move || {
///     waker.call_soon(move |lp| { s.fetch_add(1, Ordering::SeqCst); lp.stop(); }).unwrap();
/// });
/// lp.run_with(sockloop::RunOptions::new().until_stopped())?;
/// assert_eq!(seen.load(Ordering::SeqCst), 1);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Waker {
    wake: SelectorWaker,
    jobs: Arc<Jobs>,
}

impl Waker {
    pub(crate) fn new(wake: SelectorWaker, jobs: Arc<Jobs>) -> Waker {
        Waker { wake, jobs }
    }

    /// Wakes the loop: its current or next wait returns at once.
    ///
    /// ```
    /// let mut lp = sockloop::Loop::new()?;
    /// lp.waker()?.wake()?;
    /// lp.poll(None)?; // returns although nothing else happened
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn wake(&self) -> io::Result<()> {
        if !self.jobs.pending.swap(true, Ordering::AcqRel) {
            self.wake.wake()?;
        }
        Ok(())
    }

    /// Runs `f` on the loop's thread during its next pass.
    ///
    /// ```
    /// let mut lp = sockloop::Loop::new()?;
    /// lp.waker()?.call_soon(|lp| lp.stop())?;
    /// lp.run_with(sockloop::RunOptions::new().until_stopped())?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn call_soon(&self, f: impl FnOnce(&mut Loop) + Send + 'static) -> io::Result<()> {
        self.jobs.queue.lock().unwrap_or_else(|p| p.into_inner()).push(Box::new(f));
        self.wake()
    }
}

impl fmt::Debug for Waker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Waker(fd={})", self.wake.fileno())
    }
}
