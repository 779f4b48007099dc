//! Unix signals delivered to handlers on the loop thread.
//!
//! signal-hook does the async-signal-safe part: per signal it sets a flag and writes a byte to
//! our socket pair. The loop watches the read end like any channel, drains it, and calls the
//! handler of every signal whose flag was set. Nothing else runs in signal context.

use crate::Loop;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The poller token reserved for the signal pipe.
pub(crate) const SIGNAL_TOKEN: u64 = u64::MAX - 1;

type SignalHandler = Box<dyn FnMut(&mut Loop)>;

struct Registration {
    signal: i32,
    flag: Arc<AtomicBool>,
    ids: [signal_hook::SigId; 2],
    handler: Option<SignalHandler>,
}

pub(crate) struct Signals {
    read: UnixStream,
    write: UnixStream,
    regs: Vec<Registration>,
}

impl Signals {
    pub fn new() -> io::Result<Signals> {
        let (read, write) = UnixStream::pair()?;
        read.set_nonblocking(true)?;
        write.set_nonblocking(true)?;
        Ok(Signals { read, write, regs: Vec::new() })
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.read.as_fd()
    }

    pub fn add(&mut self, signal: i32, handler: SignalHandler) -> io::Result<()> {
        if let Some(reg) = self.regs.iter_mut().find(|r| r.signal == signal) {
            reg.handler = Some(handler);
            return Ok(());
        }
        let flag = Arc::new(AtomicBool::new(false));
        let flag_id = signal_hook::flag::register(signal, flag.clone())?;
        let pipe_id = match signal_hook::low_level::pipe::register(signal, self.write.try_clone()?) {
            Ok(id) => id,
            Err(e) => {
                signal_hook::low_level::unregister(flag_id);
                return Err(e);
            }
        };
        self.regs.push(Registration { signal, flag, ids: [flag_id, pipe_id], handler: Some(handler) });
        Ok(())
    }

    /// Empties the pipe and returns the index of each registration whose signal arrived.
    pub fn take_fired(&mut self, out: &mut Vec<usize>) {
        let mut buf = [0u8; 64];
        while matches!(self.read.read(&mut buf), Ok(n) if n > 0) {}
        for (i, reg) in self.regs.iter().enumerate() {
            if reg.flag.swap(false, Ordering::AcqRel) {
                out.push(i);
            }
        }
    }

    pub fn take_handler(&mut self, i: usize) -> Option<SignalHandler> {
        self.regs.get_mut(i)?.handler.take()
    }

    pub fn put_handler(&mut self, i: usize, h: SignalHandler) {
        if let Some(reg) = self.regs.get_mut(i) {
            reg.handler.get_or_insert(h);
        }
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        for reg in &self.regs {
            for id in reg.ids {
                signal_hook::low_level::unregister(id);
            }
        }
    }
}
