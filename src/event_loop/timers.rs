//! Timers: a binary heap of deadlines over a slab of actions.
//!
//! Cancelling removes the action from the slab (O(1)); its heap entry is skipped when it
//! surfaces, and the heap is rebuilt when such dead entries outnumber the live ones, so a
//! million schedule/cancel cycles cost O(log n) each and memory stays proportional to the live
//! timers (calloop's O(n) cancel is the failure this avoids).

use super::Token;
use crate::Loop;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// Identifies a scheduled timer, for [`Loop::cancel`](crate::LoopHandle::cancel).
///
/// ```
/// let mut lp = sockloop::Loop::new()?;
/// let id = lp.call_later(std::time::Duration::from_secs(60), |_| {});
/// assert!(lp.cancel(id));
/// assert!(!lp.cancel(id));
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    slot: u32,
    gen: u32,
}

/// What a timer does when it fires.
pub(crate) enum Action {
    Once(Box<dyn FnOnce(&mut Loop)>),
    Every(Box<dyn FnMut(&mut Loop)>, Duration),
    /// Call the channel's `handle_timeout`.
    Timeout(Token),
    /// The channel's idle timeout: fire `handle_timeout` if it saw no event for that long.
    Idle(Token),
    /// Resume reading on a channel paused by `pause_reading`.
    Resume(Token),
    /// A TLS handshake's deadline: close the channel if it is still handshaking.
    #[cfg(feature = "tls")]
    TlsHandshake(Token),
}

struct Slot {
    gen: u32,
    deadline: Instant,
    /// `None` while a periodic callback is running (it is put back afterwards).
    action: Option<Action>,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct HeapEntry {
    deadline: Instant,
    seq: u64,
    slot: u32,
    gen: u32,
}

#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<HeapEntry>>,
    slots: slab::Slab<Slot>,
    next_gen: u32,
    seq: u64,
}

impl Timers {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn schedule(&mut self, deadline: Instant, action: Action) -> TimerId {
        self.next_gen = self.next_gen.wrapping_add(1);
        let gen = self.next_gen;
        let slot = self.slots.insert(Slot { gen, deadline, action: Some(action) }) as u32;
        self.push(deadline, slot, gen);
        TimerId { slot, gen }
    }

    fn push(&mut self, deadline: Instant, slot: u32, gen: u32) {
        self.seq += 1;
        self.heap.push(Reverse(HeapEntry { deadline, seq: self.seq, slot, gen }));
        if self.heap.len() > 64 && self.heap.len() > 2 * self.slots.len() {
            self.compact();
        }
    }

    fn compact(&mut self) {
        let slots = &self.slots;
        self.heap.retain(|Reverse(e)| Self::live(slots, e));
    }

    fn live(slots: &slab::Slab<Slot>, e: &HeapEntry) -> bool {
        slots.get(e.slot as usize).is_some_and(|s| s.gen == e.gen && s.deadline == e.deadline)
    }

    pub fn cancel(&mut self, id: TimerId) -> bool {
        match self.slots.get(id.slot as usize) {
            Some(s) if s.gen == id.gen => {
                self.slots.remove(id.slot as usize);
                true
            }
            _ => false,
        }
    }

    /// The earliest live deadline.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse(top)) = self.heap.peek() {
            if Self::live(&self.slots, top) {
                return Some(top.deadline);
            }
            self.heap.pop();
        }
        None
    }

    /// A mark taken before firing: timers scheduled after it wait for the next pass.
    pub fn mark(&self) -> u64 {
        self.seq
    }

    /// Takes the next timer due at `now` that was scheduled before `mark`. A periodic timer
    /// keeps its slot (with no action) until [`Timers::restore`] puts it back.
    pub fn pop_due(&mut self, now: Instant, mark: u64) -> Option<(TimerId, Action)> {
        loop {
            let Reverse(top) = self.heap.peek()?;
            if top.deadline > now || top.seq > mark {
                return None;
            }
            let Reverse(e) = self.heap.pop()?;
            if !Self::live(&self.slots, &e) {
                continue;
            }
            let id = TimerId { slot: e.slot, gen: e.gen };
            let periodic = matches!(self.slots[e.slot as usize].action, Some(Action::Every(..)));
            if periodic {
                let action = self.slots[e.slot as usize].action.take()?;
                return Some((id, action));
            }
            let slot = self.slots.remove(e.slot as usize);
            return Some((id, slot.action?));
        }
    }

    /// Puts a periodic action back after it ran, unless it was cancelled meanwhile.
    pub fn restore(&mut self, id: TimerId, action: Action, period: Duration, now: Instant) {
        let Some(slot) = self.slots.get_mut(id.slot as usize) else { return };
        if slot.gen != id.gen {
            return;
        }
        // Keep the cadence; after a stall, skip the missed ticks instead of firing a burst.
        let mut next = slot.deadline + period;
        if next <= now {
            next = now + period;
        }
        slot.deadline = next;
        slot.action = Some(action);
        self.push(next, id.slot, id.gen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id_order(t: &mut Timers, now: Instant) -> Vec<u32> {
        let mark = t.mark();
        let mut out = vec![];
        while let Some((_, a)) = t.pop_due(now, mark) {
            if let Action::Timeout(tok) = a {
                out.push(tok.index() as u32);
            }
        }
        out
    }

    #[test]
    fn fire_in_deadline_order_and_skip_cancelled() {
        let mut t = Timers::default();
        let base = Instant::now();
        let _a = t.schedule(base + Duration::from_millis(30), Action::Timeout(Token::new(3, 0)));
        let b = t.schedule(base + Duration::from_millis(10), Action::Timeout(Token::new(1, 0)));
        let _c = t.schedule(base + Duration::from_millis(20), Action::Timeout(Token::new(2, 0)));
        assert!(t.cancel(b));
        assert_eq!(t.next_deadline(), Some(base + Duration::from_millis(20)));
        assert_eq!(id_order(&mut t, base + Duration::from_millis(40)), vec![2, 3]);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn heap_stays_bounded_under_schedule_cancel_churn() {
        let mut t = Timers::default();
        let base = Instant::now();
        for i in 0..100_000u64 {
            let id = t.schedule(base + Duration::from_millis(i), Action::Timeout(Token::new(0, 0)));
            assert!(t.cancel(id));
        }
        assert!(t.heap.len() <= 130, "heap kept {} dead entries", t.heap.len());
    }
}
