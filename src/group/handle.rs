//! [`GroupHandle`]: posts work into any loop of a group from any thread; [`Member`]: what the
//! setup closure gets on each loop's thread.

use crate::{Channel, Dispatcher, Loop, Token, Waker};
use std::cell::RefCell;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One loop as the others see it: its waker, and whether it still runs.
pub(crate) struct Slot {
    pub waker: Waker,
    pub running: AtomicBool,
}

/// A `Send + Sync + Clone` handle on every loop of a [`LoopGroup`](super::LoopGroup): post a
/// closure into loop `i` (it runs on that loop's thread, during its next pass, after what the
/// same thread posted before it), reach a channel that lives there, or shut the group down.
/// Built on each loop's [`Waker`], so a post costs one `write` at most.
///
/// ```
/// use sockloop::group::LoopGroup;
/// let group = LoopGroup::builder().threads(2).start(|_lp, _member| Ok(()))?;
/// let handle = group.handle();
/// assert_eq!(handle.len(), 2);
/// handle.post(1, |lp| assert!(lp.is_empty()))?;
/// handle.shutdown(std::time::Duration::from_secs(1));
/// group.join()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct GroupHandle {
    pub(crate) slots: Arc<[Slot]>,
}

impl GroupHandle {
    /// The number of loops.
    ///
    /// ```
    /// let group = sockloop::group::LoopGroup::builder().threads(1).start(|_, _| Ok(()))?;
    /// assert_eq!(group.handle().len(), 1);
    /// # group.handle().shutdown(std::time::Duration::ZERO); group.join()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Always false: a group has at least one loop.
    ///
    /// ```
    /// let group = sockloop::group::LoopGroup::builder().threads(1).start(|_, _| Ok(()))?;
    /// assert!(!group.handle().is_empty());
    /// # group.handle().shutdown(std::time::Duration::ZERO); group.join()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Whether loop `index` is still running (false once its thread left its loop).
    ///
    /// ```
    /// let group = sockloop::group::LoopGroup::builder().threads(1).start(|_, _| Ok(()))?;
    /// let handle = group.handle();
    /// assert!(handle.is_running(0));
    /// handle.shutdown(std::time::Duration::ZERO);
    /// group.join()?;
    /// assert!(!handle.is_running(0));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_running(&self, index: usize) -> bool {
        self.slots.get(index).is_some_and(|s| s.running.load(Ordering::Acquire))
    }

    /// The [`Waker`] of loop `index`.
    ///
    /// ```
    /// let group = sockloop::group::LoopGroup::builder().threads(1).start(|_, _| Ok(()))?;
    /// group.handle().waker(0).wake()?;
    /// # group.handle().shutdown(std::time::Duration::ZERO); group.join()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn waker(&self, index: usize) -> &Waker {
        &self.slots[index].waker
    }

    /// Runs `f` on loop `index`'s thread during its next pass ([`Waker::call_soon`]). Posts
    /// from one thread run in the order they were made, each exactly once. Fails with
    /// `NotConnected` if that loop no longer runs (then `f` is dropped, not run), with
    /// `InvalidInput` for an index past the group.
    ///
    /// ```
    /// let group = sockloop::group::LoopGroup::builder().threads(2).start(|_, _| Ok(()))?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// group.handle().post(1, move |_lp| tx.send("ran on loop 1").unwrap())?;
    /// assert_eq!(rx.recv().unwrap(), "ran on loop 1");
    /// # group.handle().shutdown(std::time::Duration::ZERO); group.join()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn post(&self, index: usize, f: impl FnOnce(&mut Loop) + Send + 'static) -> io::Result<()> {
        let Some(slot) = self.slots.get(index) else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("no loop {index}")));
        };
        if !slot.running.load(Ordering::Acquire) {
            return Err(io::Error::new(io::ErrorKind::NotConnected, format!("loop {index} has stopped")));
        }
        slot.waker.call_soon(f)
    }

    /// Runs `f` on the channel `token` of loop `index`, if it is still there and its
    /// dispatcher is (or wraps) a `T`: how a handler passes a message to a channel that lives
    /// on another loop. The loop re-asks the channel's interest afterwards, so output `f`
    /// queues is sent.
    ///
    /// ```
    /// use sockloop::{Channel, Dispatcher};
    /// struct Inbox(Vec<String>);
    /// impl Dispatcher for Inbox {}
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// let group = sockloop::group::LoopGroup::builder().threads(2).start(move |lp, member| {
    ///     if member.index() == 1 {
    ///         let t = lp.add(Channel::tcp_listener("127.0.0.1:0".parse().unwrap(), 1)?, Inbox(Vec::new()))?;
    ///         tx.send(t).unwrap();
    ///     }
    ///     Ok(())
    /// })?;
    /// let token = rx.recv().unwrap();
    /// let (done_tx, done_rx) = std::sync::mpsc::channel();
    /// group.handle().send_to::<Inbox>(1, token, move |inbox, _ch| {
    ///     inbox.0.push("hello".into());
    ///     done_tx.send(inbox.0.len()).unwrap();
    /// })?;
    /// assert_eq!(done_rx.recv().unwrap(), 1);
    /// # group.handle().shutdown(std::time::Duration::ZERO); group.join()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn send_to<T: Dispatcher>(
        &self,
        index: usize,
        token: Token,
        f: impl FnOnce(&mut T, &mut Channel) + Send + 'static,
    ) -> io::Result<()> {
        self.post(index, move |lp| {
            if let Some((d, ch)) = lp.get_mut::<T>(token) {
                f(d, ch);
            } else {
                log::debug!(target: "sockloop", "send_to: {token:?} is gone from its loop");
            }
        })
    }

    /// Graceful shutdown of every loop ([`Loop::shutdown`] on each): they stop accepting,
    /// flush within `grace`, and their threads end; [`LoopGroup::join`](super::LoopGroup::join)
    /// then returns. What SIGINT/SIGTERM do when the group catches them
    /// ([`GroupBuilder::shutdown_on_signals`](super::GroupBuilder::shutdown_on_signals)).
    ///
    /// ```
    /// let group = sockloop::group::LoopGroup::builder().threads(2).start(|_, _| Ok(()))?;
    /// group.handle().shutdown(std::time::Duration::from_secs(5));
    /// group.join()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn shutdown(&self, grace: Duration) {
        for slot in self.slots.iter() {
            let _ = slot.waker.call_soon(move |lp| lp.shutdown(grace));
        }
    }
}

type ExitHook = Box<dyn FnOnce(&mut Loop)>;

/// What the setup closure gets on each loop's thread, beside the [`Loop`]: which loop this is,
/// the [`GroupHandle`], and a place for work to do when this loop's run ends.
///
/// ```
/// use sockloop::group::LoopGroup;
/// let group = LoopGroup::builder().threads(2).start(|_lp, member| {
///     assert!(member.index() < member.len());
///     member.on_exit(|lp| assert!(lp.is_empty()));
///     Ok(())
/// })?;
/// group.handle().shutdown(std::time::Duration::ZERO);
/// group.join()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Member {
    pub(crate) index: usize,
    pub(crate) group: GroupHandle,
    pub(crate) exit: RefCell<Vec<ExitHook>>,
}

impl Member {
    /// This loop's index in the group, from 0.
    ///
    /// ```
    /// # let group = sockloop::group::LoopGroup::builder().threads(1).start(|_, m| { assert_eq!(m.index(), 0); Ok(()) })?;
    /// # group.handle().shutdown(std::time::Duration::ZERO); group.join()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn index(&self) -> usize {
        self.index
    }

    /// The number of loops in the group.
    ///
    /// ```
    /// # let group = sockloop::group::LoopGroup::builder().threads(2).start(|_, m| { assert_eq!(m.len(), 2); Ok(()) })?;
    /// # group.handle().shutdown(std::time::Duration::ZERO); group.join()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.group.len()
    }

    /// Always false: a group has at least one loop.
    ///
    /// ```
    /// # let group = sockloop::group::LoopGroup::builder().threads(1).start(|_, m| { assert!(!m.is_empty()); Ok(()) })?;
    /// # group.handle().shutdown(std::time::Duration::ZERO); group.join()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.group.is_empty()
    }

    /// The handle on every loop (clone it into handlers that post to other loops).
    ///
    /// ```
    /// # let group = sockloop::group::LoopGroup::builder().threads(1).start(|_, m| { let _h = m.group().clone(); Ok(()) })?;
    /// # group.handle().shutdown(std::time::Duration::ZERO); group.join()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn group(&self) -> &GroupHandle {
        &self.group
    }

    /// Runs `f` with this loop once its run has ended (after a shutdown, a `stop`, or a
    /// failure), before its thread ends: add up per-loop counters, hand over what is left.
    /// Hooks run in the order they were added.
    ///
    /// ```
    /// use std::sync::{Arc, atomic::{AtomicUsize, Ordering}};
    /// let ran = Arc::new(AtomicUsize::new(0));
    /// let r = ran.clone();
    /// let group = sockloop::group::LoopGroup::builder().threads(2).start(move |_, m| {
    ///     let r = r.clone();
    ///     m.on_exit(move |_| { r.fetch_add(1, Ordering::SeqCst); });
    ///     Ok(())
    /// })?;
    /// group.handle().shutdown(std::time::Duration::ZERO);
    /// group.join()?;
    /// assert_eq!(ran.load(Ordering::SeqCst), 2);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn on_exit(&self, f: impl FnOnce(&mut Loop) + 'static) {
        self.exit.borrow_mut().push(Box::new(f));
    }
}
