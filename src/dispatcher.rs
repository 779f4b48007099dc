//! The [`Dispatcher`] trait: asyncore's `dispatcher` handlers, with the seed's defaults, and
//! [`Handler`], which names them.

use crate::{Context, TimerId};
use socket2::{SockAddr, Socket};
use std::any::Any;
use std::fmt;
use std::io;

/// Which handler is running (or failed): [`Context::handler`], [`Context::failed_handler`].
///
/// ```
/// use sockloop::Handler;
/// assert_eq!(Handler::Read.to_string(), "handle_read");
/// assert_eq!(Handler::Idle.name(), "handle_timeout");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Handler {
    /// `handle_read`.
    Read,
    /// `handle_write` (and the flush of queued output before it).
    Write,
    /// `handle_expt`.
    Expt,
    /// `handle_connect`.
    Connect,
    /// `handle_accept` (and `handle_accepted`, which it calls).
    Accept,
    /// `handle_close`.
    Close,
    /// `handle_error`.
    Error,
    /// `handle_timeout` for a timer set with
    /// [`LoopHandle::set_timeout`](crate::LoopHandle::set_timeout): the timer's id.
    Timeout(TimerId),
    /// `handle_timeout` for the channel's idle timeout.
    Idle,
    /// `handle_shutdown`.
    Shutdown,
}

impl Handler {
    /// The dispatcher method's name, as reports print it.
    ///
    /// ```
    /// assert_eq!(sockloop::Handler::Accept.name(), "handle_accept");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Handler::Read => "handle_read",
            Handler::Write => "handle_write",
            Handler::Expt => "handle_expt",
            Handler::Connect => "handle_connect",
            Handler::Accept => "handle_accept",
            Handler::Close => "handle_close",
            Handler::Error => "handle_error",
            Handler::Timeout(_) | Handler::Idle => "handle_timeout",
            Handler::Shutdown => "handle_shutdown",
        }
    }
}

impl fmt::Display for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The handlers of an asyncore `dispatcher`: the user's state and what it does on each event.
///
/// The loop owns a [`Channel`](crate::Channel) (the socket) and a dispatcher per map entry and
/// calls the handlers below with a [`Context`] that lends the channel (`cx.channel.recv`,
/// `cx.channel.send_all` ...) and the loop's services (`cx.lp.add`, `cx.lp.get_mut`,
/// `cx.lp.call_later`, `cx.lp.stop`).
/// Every method has the seed's default, so a dispatcher overrides only what it needs.
///
/// A handler returning `Err` reaches [`handle_error`](Dispatcher::handle_error), except that
/// `WouldBlock` is ignored (a spurious readiness, as the seed warns) and a disconnect error
/// (reset, broken pipe) reaches [`handle_close`](Dispatcher::handle_close), as in asyncore's
/// `readwrite`. A panicking handler is caught and reported to `handle_error` too.
///
/// `readable()` and `writable()` are asked after each of the channel's own handlers runs (and
/// after `cx.get_mut` lent it to another channel), and the answer is kept with the OS until it
/// changes. If an answer depends on anything else (the clock, shared state), make
/// [`volatile`](Dispatcher::volatile) return true and it is asked every pass, as asyncore did.
///
/// ```no_run
/// use sockloop::{Channel, Context, Dispatcher, Loop, WithSend};
/// use std::io;
///
/// struct Echo;
/// impl Dispatcher for Echo {
///     fn handle_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
///         let mut buf = [0u8; 8192];
///         let n = cx.channel.recv(&mut buf)?; // 0: the peer closed, handle_close follows
///         cx.channel.send_all(&buf[..n])
///     }
/// }
///
/// struct Server;
/// impl Dispatcher for Server {
///     fn handle_accepted(&mut self, sock: sockloop::Socket, _addr: sockloop::SockAddr, cx: &mut Context<'_>) -> io::Result<()> {
///         cx.lp.add(Channel::from(sock), WithSend::new(Echo))?;
///         Ok(())
///     }
/// }
///
/// let mut lp = Loop::new()?;
/// lp.add(Channel::tcp_listener("127.0.0.1:8080".parse().unwrap(), 1024)?, Server)?;
/// lp.run()
/// # ;Ok::<(), io::Error>(())
/// ```
pub trait Dispatcher: Any {
    /// asyncore `readable()`: whether the loop should watch for input. Default `true`.
    ///
    /// ```
    /// struct Paused { paused: bool }
    /// impl sockloop::Dispatcher for Paused {
    ///     fn readable(&self) -> bool { !self.paused }
    /// }
    /// assert!(!sockloop::Dispatcher::readable(&Paused { paused: true }));
    /// ```
    fn readable(&self) -> bool {
        true
    }

    /// asyncore `writable()`: whether the loop should watch for output room. Default `true`
    /// (as in asyncore, which makes an idle plain dispatcher wake the loop on every pass; use
    /// [`WithSend`](crate::WithSend) or answer honestly). Queued output from
    /// [`send_all`](crate::Channel::send_all) and a pending connect are watched whatever this says.
    ///
    /// ```
    /// struct Quiet;
    /// impl sockloop::Dispatcher for Quiet {
    ///     fn writable(&self) -> bool { false } // only queued output wakes it
    /// }
    /// assert!(!sockloop::Dispatcher::writable(&Quiet));
    /// ```
    fn writable(&self) -> bool {
        true
    }

    /// Whether `readable()`/`writable()` depend on state outside this dispatcher, so the loop
    /// must ask them every pass instead of after this channel's own events. Default `false`.
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc};
    /// struct Gated { open: Rc<Cell<bool>> } // the gate changes outside the handlers
    /// impl sockloop::Dispatcher for Gated {
    ///     fn readable(&self) -> bool { self.open.get() }
    ///     fn volatile(&self) -> bool { true }
    /// }
    /// ```
    fn volatile(&self) -> bool {
        false
    }

    /// Whether this channel may receive TCP urgent (out-of-band) data that
    /// [`handle_expt`](Dispatcher::handle_expt) must see. Default `true`. Answer `false` for a
    /// TCP stream that never needs it, and on the io_uring backend its input is received on the
    /// ring (no `recv` syscall): a receive in the kernel reads on past an urgent mark, and the
    /// kernel then drops the urgent byte, as a plain `recv` at the mark does, so such a channel
    /// never sees `handle_expt`. Unix streams have no urgent data and are received on the ring
    /// whatever this says. Asked once, when the channel enters the loop connected.
    ///
    /// ```
    /// struct Echo;
    /// impl sockloop::Dispatcher for Echo {
    ///     fn urgent_data(&self) -> bool { false } // no handle_expt: let io_uring receive
    /// }
    /// assert!(!sockloop::Dispatcher::urgent_data(&Echo));
    /// ```
    fn urgent_data(&self) -> bool {
        true
    }

    /// Whether this dispatcher holds output that is not in the channel yet (asynchat's
    /// producers): a channel draining after
    /// [`close_when_done`](crate::Channel::close_when_done) stays open, and its `handle_write`
    /// runs, until this is false and the channel's own buffer is sent. Default `false`.
    ///
    /// ```
    /// struct Pages { left: Vec<Vec<u8>> }
    /// impl sockloop::Dispatcher for Pages {
    ///     fn writable(&self) -> bool { !self.left.is_empty() }
    ///     fn holds_output(&self) -> bool { !self.left.is_empty() }
    ///     fn handle_write(&mut self, cx: &mut sockloop::Context<'_>) -> std::io::Result<()> {
    ///         match self.left.pop() { Some(page) => cx.channel.send_all(&page), None => Ok(()) }
    ///     }
    /// }
    /// ```
    fn holds_output(&self) -> bool {
        false
    }

    /// asyncore `handle_read()`: the socket has data (or end of stream) to read.
    ///
    /// ```
    /// struct Sink { bytes: usize }
    /// impl sockloop::Dispatcher for Sink {
    ///     fn handle_read(&mut self, cx: &mut sockloop::Context<'_>) -> std::io::Result<()> {
    ///         self.bytes += cx.channel.recv(cx.scratch)?; // 0 at end of stream
    ///         Ok(())
    ///     }
    /// }
    /// ```
    fn handle_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        cx.log_info("unhandled read event", log::Level::Warn);
        Ok(())
    }

    /// asyncore `handle_write()`: the socket can take output and `writable()` said yes.
    /// Queued `send_all` output has already been flushed when this runs.
    ///
    /// ```
    /// struct Counter { next: u64, until: u64 }
    /// impl sockloop::Dispatcher for Counter {
    ///     fn writable(&self) -> bool { self.next < self.until }
    ///     fn handle_write(&mut self, cx: &mut sockloop::Context<'_>) -> std::io::Result<()> {
    ///         cx.channel.send_all(format!("{}\n", self.next).as_bytes())?;
    ///         self.next += 1;
    ///         Ok(())
    ///     }
    /// }
    /// ```
    fn handle_write(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        cx.log_info("unhandled write event", log::Level::Warn);
        Ok(())
    }

    /// asyncore `handle_expt()`: urgent (out-of-band) data arrived. The default logs a warning
    /// and reads the urgent byte away, so a peer flooding urgent data cannot make the loop spin.
    ///
    /// ```
    /// struct Urgent { flags: Vec<u8> }
    /// impl sockloop::Dispatcher for Urgent {
    ///     fn handle_expt(&mut self, cx: &mut sockloop::Context<'_>) -> std::io::Result<()> {
    ///         let mut byte = [0u8; 1];
    ///         let n = cx.channel.recv_oob(&mut byte)?;
    ///         self.flags.extend_from_slice(&byte[..n]);
    ///         Ok(())
    ///     }
    /// }
    /// ```
    fn handle_expt(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        cx.log_info("unhandled incoming priority event", log::Level::Warn);
        let mut byte = [0u8; 1];
        let _ = cx.channel.recv_oob(&mut byte);
        Ok(())
    }

    /// asyncore `handle_connect()`: the non-blocking connect completed.
    ///
    /// ```
    /// struct Hello;
    /// impl sockloop::Dispatcher for Hello {
    ///     fn writable(&self) -> bool { false }
    ///     fn handle_connect(&mut self, cx: &mut sockloop::Context<'_>) -> std::io::Result<()> {
    ///         cx.channel.send_all(b"HELLO\r\n")
    ///     }
    /// }
    /// ```
    fn handle_connect(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        cx.log_info("unhandled connect event", log::Level::Warn);
        Ok(())
    }

    /// asyncore `handle_accept()`: a listening channel has a connection waiting. The default
    /// accepts it and calls [`handle_accepted`](Dispatcher::handle_accepted). When the process is
    /// out of descriptors (EMFILE/ENFILE) it pauses accepting for half a second instead of
    /// failing or spinning; the waiting clients stay in the kernel's backlog.
    ///
    /// ```
    /// struct CountingListener { accepted: u32 }
    /// impl sockloop::Dispatcher for CountingListener {
    ///     fn handle_accept(&mut self, cx: &mut sockloop::Context<'_>) -> std::io::Result<()> {
    ///         if let Some((sock, _addr)) = cx.channel.accept()? {
    ///             self.accepted += 1;
    ///             drop(sock); // refuse politely
    ///         }
    ///         Ok(())
    ///     }
    /// }
    /// ```
    fn handle_accept(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match cx.channel.accept() {
            Ok(Some((sock, addr))) => self.handle_accepted(sock, addr, cx),
            Ok(None) => Ok(()),
            Err(e) if pause_if_out_of_descriptors(&e, cx) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// asyncore `handle_accepted(sock, addr)`: a connection was accepted. The default logs a
    /// warning and closes it.
    ///
    /// ```
    /// use sockloop::{Channel, Context, Dispatcher, Ignore, SockAddr, Socket};
    /// struct Server;
    /// impl Dispatcher for Server {
    ///     fn handle_accepted(&mut self, sock: Socket, addr: SockAddr, cx: &mut Context<'_>) -> std::io::Result<()> {
    ///         println!("Incoming connection from {:?}", addr.as_socket());
    ///         cx.lp.add(Channel::from(sock), Ignore)?;
    ///         Ok(())
    ///     }
    /// }
    /// ```
    fn handle_accepted(&mut self, sock: Socket, addr: SockAddr, cx: &mut Context<'_>) -> io::Result<()> {
        let _ = (sock, addr);
        cx.log_info("unhandled accepted event", log::Level::Warn);
        Ok(())
    }

    /// asyncore `handle_close()`: the peer closed or disconnected. The default closes the
    /// channel.
    ///
    /// ```
    /// struct Polite;
    /// impl sockloop::Dispatcher for Polite {
    ///     fn handle_close(&mut self, cx: &mut sockloop::Context<'_>) -> std::io::Result<()> {
    ///         cx.channel.close_when_done(); // a half-closed peer still gets what it is owed
    ///         Ok(())
    ///     }
    /// }
    /// ```
    fn handle_close(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        cx.channel.close();
        Ok(())
    }

    /// asyncore `handle_error()`: a handler failed or panicked with `err`. The default logs a
    /// condensed report (dispatcher type, handler, channel, error) at error level and closes
    /// the channel.
    ///
    /// ```
    /// struct Tolerant;
    /// impl sockloop::Dispatcher for Tolerant {
    ///     fn handle_error(&mut self, err: std::io::Error, cx: &mut sockloop::Context<'_>) {
    ///         if sockloop::HandlerPanic::is(&err) {
    ///             cx.channel.close(); // state may be broken after a panic
    ///         } else {
    ///             eprintln!("{} failed: {err}; keeping the channel", cx.failed_handler());
    ///         }
    ///     }
    /// }
    /// ```
    fn handle_error(&mut self, err: io::Error, cx: &mut Context<'_>) {
        report_and_close(std::any::type_name_of_val(self), &err, cx.failed_handler(), cx.channel);
    }

    /// Called when a timer set with [`LoopHandle::set_timeout`](crate::LoopHandle::set_timeout)
    /// expires ([`Context::handler`] is then [`Handler::Timeout`] with its id) or the channel's
    /// idle timeout ([`LoopHandle::set_idle_timeout`](crate::LoopHandle::set_idle_timeout))
    /// passes with no event ([`Handler::Idle`]). The default closes the channel.
    ///
    /// ```
    /// struct Session;
    /// impl sockloop::Dispatcher for Session {
    ///     fn handle_timeout(&mut self, cx: &mut sockloop::Context<'_>) -> std::io::Result<()> {
    ///         cx.channel.send_all(b"421 idle too long\r\n")?;
    ///         cx.channel.close_when_done();
    ///         Ok(())
    ///     }
    /// }
    /// ```
    fn handle_timeout(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        cx.channel.close();
        Ok(())
    }

    /// The loop is shutting down gracefully ([`Loop::shutdown`](crate::Loop::shutdown)): stop
    /// reading, send what is owed, then close, before the grace period ends (the loop closes
    /// whatever is left then). The default calls [`close_when_done`](crate::Channel::close_when_done)
    /// on the channel; override it to say goodbye first, or to finish output the channel does
    /// not hold yet (asynchat's producers do).
    ///
    /// ```
    /// use sockloop::{Context, Dispatcher};
    /// struct Session;
    /// impl Dispatcher for Session {
    ///     fn handle_shutdown(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
    ///         cx.channel.send_all(b"421 shutting down\r\n")?;
    ///         cx.channel.close_when_done();
    ///         Ok(())
    ///     }
    /// }
    /// ```
    fn handle_shutdown(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        cx.channel.close_when_done();
        Ok(())
    }

    /// For adapters such as [`WithSend`](crate::WithSend): the
    /// dispatcher they wrap, so [`LoopHandle::get_mut`](crate::LoopHandle::get_mut) can find a
    /// user type inside them.
    /// Leave the default (`None`) in your own dispatchers.
    ///
    /// ```
    /// use sockloop::Dispatcher;
    /// struct Logged<D>(D);
    /// impl<D: Dispatcher> Dispatcher for Logged<D> {
    ///     fn inner_mut(&mut self) -> Option<&mut dyn Dispatcher> { Some(&mut self.0) }
    /// }
    /// ```
    fn inner_mut(&mut self) -> Option<&mut dyn Dispatcher> {
        None
    }
}

/// What a listener does when `accept` fails for want of descriptors (EMFILE/ENFILE): pause
/// its reading for 500 ms, so the loop rests instead of spinning and the waiting clients stay in
/// the kernel's backlog. Returns whether `e` was such a failure.
pub(crate) fn pause_if_out_of_descriptors(e: &io::Error, cx: &mut Context<'_>) -> bool {
    if !crate::errors::is_fd_exhaustion(e) {
        return false;
    }
    log::warn!("sockloop: accept: {e}; pausing accepts for 500 ms");
    cx.lp.pause_reading(cx.token(), std::time::Duration::from_millis(500));
    true
}

/// Finds a `T` in `d` or in the dispatchers it wraps.
pub(crate) fn downcast_mut<T: Dispatcher>(d: &mut dyn Dispatcher) -> Option<&mut T> {
    if (d as &mut dyn Any).is::<T>() {
        return (d as &mut dyn Any).downcast_mut::<T>();
    }
    d.inner_mut().and_then(downcast_mut::<T>)
}

/// The default `handle_error`: report (through `log`, or on stderr when no logger takes error
/// records), close the channel.
pub(crate) fn report_and_close(
    type_name: &str,
    err: &io::Error,
    failed: Handler,
    channel: &mut crate::Channel,
) {
    let line = crate::compact_report(short_type_name(type_name), failed.name(), &format!("{channel:?}"), err);
    crate::errors::emit(&line);
    channel.close();
}

/// `my_crate::module::Type<Args>` -> `Type<Args>` for reports.
pub(crate) fn short_type_name(full: &str) -> &str {
    let head = full.split('<').next().unwrap_or(full);
    match head.rfind("::") {
        Some(i) => &full[i + 2..],
        None => full,
    }
}

/// Writes the named [`Dispatcher`] handlers of a wrapper as calls of the same handler on the
/// dispatcher it wraps (`self.$field`), so a wrapper spells out only what it changes and no
/// handler is forgotten when one is added. Readiness questions (`readable()`, ...) stay
/// explicit in each wrapper: those are what wrappers differ in.
macro_rules! forward_handlers {
    ($field:ident => $($name:ident),* $(,)?) => {
        $( $crate::dispatcher::forward_handlers!(@one $field $name); )*
    };
    (@one $field:ident handle_accepted) => {
        fn handle_accepted(
            &mut self,
            sock: ::socket2::Socket,
            addr: ::socket2::SockAddr,
            cx: &mut $crate::Context<'_>,
        ) -> std::io::Result<()> {
            self.$field.handle_accepted(sock, addr, cx)
        }
    };
    (@one $field:ident handle_error) => {
        fn handle_error(&mut self, err: std::io::Error, cx: &mut $crate::Context<'_>) {
            self.$field.handle_error(err, cx)
        }
    };
    (@one $field:ident inner_mut) => {
        fn inner_mut(&mut self) -> Option<&mut dyn $crate::Dispatcher> {
            Some(&mut self.$field)
        }
    };
    (@one $field:ident $name:ident) => {
        fn $name(&mut self, cx: &mut $crate::Context<'_>) -> std::io::Result<()> {
            self.$field.$name(cx)
        }
    };
}
pub(crate) use forward_handlers;
