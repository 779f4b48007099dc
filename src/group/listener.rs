//! [`SharedListener`]: one listening address served by every loop of a group, in one of two
//! ways ([`Sharing`]), and [`Served`], the dispatcher that wraps each loop's own server
//! dispatcher to do it.

use super::{GroupHandle, Member};
use crate::dispatcher::forward_handlers;
use crate::{Channel, Context, Dispatcher, Loop, SockAddr, Socket, Token};
use socket2::{Domain, Type};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// How the loops of a group share one listening address.
///
/// ```
/// assert_eq!(sockloop::group::Sharing::default(), sockloop::group::Sharing::ReusePort);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sharing {
    /// One `SO_REUSEPORT` listener per loop, all bound to the same port: the kernel spreads
    /// new connections over them by a hash of the addresses, and no loop ever touches
    /// another's. The default, from the measurements in `docs/benchmarks.md`: for long-lived
    /// connections it serves as many requests per second as [`Handoff`](Sharing::Handoff);
    /// for a new connection per request it costs 14 % less server CPU and splits the work
    /// evenly, where the hand-off's acceptor did 62 % of it. Its caveats: the hash ignores
    /// load (a stalled loop keeps receiving its share), few client addresses (a load balancer
    /// in front, loopback) can hash unevenly, and the connections queued on a listener that
    /// closes are reset unless the kernel migrates them (`tcp_migrate_req`, see
    /// [`Migration`](super::Migration)) or the group drains it first
    /// ([`SharedListener::retire`]).
    #[default]
    ReusePort,
    /// One listener, accepted by one loop (the acceptor) that hands each connection to the
    /// next loop in turn (round-robin, itself included) through the target's waker. Exact
    /// balance of connections whatever the addresses, and nothing is lost when the acceptor
    /// leaves (another loop takes over the same socket); costs a cross-thread post per
    /// connection and puts every accept on one thread.
    Handoff,
}

/// One listening address for every loop of a group. Bind it before starting the group (so
/// `127.0.0.1:0` picks one port, and every loop serves that port), then in the setup closure
/// [`attach`](SharedListener::attach) each loop's own server dispatcher: its
/// `handle_accepted` runs on that loop for the connections that loop serves.
///
/// ```
/// use sockloop::group::{SharedListener, Sharing};
/// let l = SharedListener::bind("127.0.0.1:0".parse().unwrap(), 128, 4, Sharing::ReusePort)?;
/// assert_ne!(l.local_addr().port(), 0);
/// assert_eq!(l.sharing(), Sharing::ReusePort);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct SharedListener {
    inner: Arc<Inner>,
}

struct Inner {
    sharing: Sharing,
    addr: SocketAddr,
    /// Each loop's listening socket until it attaches (Handoff: duplicates of one socket).
    sockets: Mutex<Vec<Option<Socket>>>,
    /// Each loop's listener entry once attached.
    tokens: Vec<OnceLock<Token>>,
    /// Set when a loop's listener retired: nothing more is handed to it.
    retired: Vec<AtomicBool>,
    /// Handoff: the loop that accepts.
    acceptor: AtomicUsize,
    /// The group, once the first loop attached.
    group: OnceLock<GroupHandle>,
}

fn listening_socket(addr: SocketAddr, backlog: i32, reuse_port: bool) -> io::Result<Socket> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    sock.set_nonblocking(true)?;
    sock.set_reuse_address(true)?;
    if reuse_port {
        sock.set_reuse_port(true)?;
    }
    sock.bind(&addr.into())?;
    sock.listen(backlog)?;
    Ok(sock)
}

impl SharedListener {
    /// Binds the listening socket(s) for a group of `loops` loops: with
    /// [`Sharing::ReusePort`], the first socket on `addr`, then the others on the port it got;
    /// with [`Sharing::Handoff`], one socket. Each with `SO_REUSEADDR` and `listen(backlog)`.
    ///
    /// ```
    /// use sockloop::group::{SharedListener, Sharing};
    /// let l = SharedListener::bind("127.0.0.1:0".parse().unwrap(), 16, 2, Sharing::Handoff)?;
    /// assert_eq!(l.sharing(), Sharing::Handoff);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn bind(
        addr: SocketAddr,
        backlog: i32,
        loops: usize,
        sharing: Sharing,
    ) -> io::Result<SharedListener> {
        let loops = loops.max(1);
        let reuse_port = sharing == Sharing::ReusePort && loops > 1;
        let first = listening_socket(addr, backlog, reuse_port)?;
        let local = first.local_addr()?.as_socket().ok_or_else(|| io::Error::other("not an IP listener"))?;
        let mut sockets = vec![Some(first)];
        for _ in 1..loops {
            let sock = match sharing {
                Sharing::ReusePort => listening_socket(local, backlog, true)?,
                Sharing::Handoff => sockets[0].as_ref().expect("bound above").try_clone()?,
            };
            sockets.push(Some(sock));
        }
        Ok(SharedListener {
            inner: Arc::new(Inner {
                sharing,
                addr: local,
                sockets: Mutex::new(sockets),
                tokens: (0..loops).map(|_| OnceLock::new()).collect(),
                retired: (0..loops).map(|_| AtomicBool::new(false)).collect(),
                acceptor: AtomicUsize::new(0),
                group: OnceLock::new(),
            }),
        })
    }

    /// The address every loop serves (the real port when bound to port 0).
    ///
    /// ```
    /// # let l = sockloop::group::SharedListener::bind("127.0.0.1:0".parse().unwrap(), 16, 1, Default::default())?;
    /// assert!(l.local_addr().ip().is_loopback());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// How the loops share it.
    ///
    /// ```
    /// # let l = sockloop::group::SharedListener::bind("127.0.0.1:0".parse().unwrap(), 16, 1, Default::default())?;
    /// assert_eq!(l.sharing(), sockloop::group::Sharing::ReusePort);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn sharing(&self) -> Sharing {
        self.inner.sharing
    }

    /// Adds this loop's listener to `lp` with `server` as its dispatcher (wrapped in a
    /// [`Served`], which [`get_mut`](crate::LoopHandle::get_mut) sees through), and arranges
    /// for [`retire`](SharedListener::retire) to run if this loop's run ends before the
    /// group shuts down. Call it once per loop, from the setup closure, on every loop of a
    /// group of the size given to [`bind`](SharedListener::bind) (another size is refused:
    /// a reuseport socket left unattached would still receive its share of connections).
    ///
    /// ```
    /// use sockloop::group::{LoopGroup, SharedListener, Sharing};
    /// let l = SharedListener::bind("127.0.0.1:0".parse().unwrap(), 16, 2, Sharing::Handoff)?;
    /// let group = LoopGroup::builder().threads(2).start(move |lp, m| {
    ///     l.attach(lp, m, sockloop::Ignore)?;
    ///     Ok(())
    /// })?;
    /// # group.handle().shutdown(std::time::Duration::ZERO); group.join()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn attach<D: Dispatcher>(&self, lp: &mut Loop, member: &Member, server: D) -> io::Result<Token> {
        let me = member.index();
        if member.len() != self.inner.tokens.len() {
            // An unattached reuseport socket would still get its share of connections.
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the listener was bound for {} loops, the group has {}",
                    self.inner.tokens.len(),
                    member.len()
                ),
            ));
        }
        let sock = self
            .inner
            .sockets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(me)
            .and_then(Option::take)
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("no listener for loop {me}"))
            })?;
        let _ = self.inner.group.set(member.group().clone());
        let served = Served { inner: server, shared: self.clone(), me, next: me };
        let token = lp.add(Channel::from(sock), served)?;
        let _ = self.inner.tokens[me].set(token);
        let this = self.clone();
        member.on_exit(move |lp| {
            if !lp.is_shutting_down() {
                this.retire(me, lp);
            }
        });
        Ok(token)
    }

    /// Takes loop `index`'s listener out of service without losing what is queued on it
    /// (call it on that loop, with its `lp`). With [`Sharing::ReusePort`]: accepts every
    /// connection already queued on it and hands each to another loop, then closes it
    /// (connections still in the handshake are reset unless `tcp_migrate_req` is on, and
    /// with it on the kernel migrates them too). With [`Sharing::Handoff`]: if it was the
    /// acceptor, the next loop takes over accepting on the same socket, so nothing queued is
    /// lost. Returns how many connections it handed over.
    ///
    /// ```
    /// use sockloop::group::{LoopGroup, SharedListener, Sharing};
    /// let l = SharedListener::bind("127.0.0.1:0".parse().unwrap(), 16, 2, Sharing::ReusePort)?;
    /// let l2 = l.clone();
    /// let group = LoopGroup::builder().threads(2).start(move |lp, m| { l2.attach(lp, m, sockloop::Ignore)?; Ok(()) })?;
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// group.handle().post(1, move |lp| tx.send(l.retire(1, lp)).unwrap())?;
    /// assert_eq!(rx.recv().unwrap(), 0); // nothing was queued
    /// # group.handle().shutdown(std::time::Duration::ZERO); group.join()?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn retire(&self, index: usize, lp: &mut Loop) -> usize {
        let inner = &self.inner;
        if inner.retired.get(index).is_none_or(|r| r.swap(true, Ordering::AcqRel)) {
            return 0;
        }
        let Some(&token) = inner.tokens[index].get() else { return 0 };
        let mut handed = 0;
        match inner.sharing {
            Sharing::ReusePort => {
                let mut from = index; // spread over the other loops in turn
                while let Some(ch) = lp.channel_mut(token) {
                    match ch.accept() {
                        Ok(Some((sock, addr))) => match self.hand_to_other(from, index, sock, addr) {
                            Some(j) => {
                                handed += 1;
                                from = j;
                            }
                            None => break, // no loop left to take them: they are reset on close
                        },
                        _ => break,
                    }
                }
            }
            Sharing::Handoff => {
                if inner.acceptor.load(Ordering::Acquire) == index {
                    if let (Some(next), Some(group)) = (self.next_live(index, index), inner.group.get()) {
                        inner.acceptor.store(next, Ordering::Release);
                        let t = *inner.tokens[next].get().expect("live loops are attached");
                        // Touching the channel makes its loop re-ask readable().
                        let _ = group.post(next, move |lp| {
                            let _ = lp.channel_mut(t);
                        });
                    }
                }
            }
        }
        lp.close_channel(token);
        handed
    }

    /// The next loop after `from` (round-robin, `me` excluded) that runs, is attached and has
    /// not retired.
    fn next_live(&self, from: usize, me: usize) -> Option<usize> {
        let n = self.inner.tokens.len();
        let group = self.inner.group.get()?;
        (1..=n).map(|k| (from + k) % n).find(|&j| j != me && self.live(group, j))
    }

    fn live(&self, group: &GroupHandle, j: usize) -> bool {
        group.is_running(j)
            && self.inner.tokens[j].get().is_some()
            && !self.inner.retired[j].load(Ordering::Acquire)
    }

    /// Posts a connection to the next live loop after `from`, other than `me`, and returns it;
    /// `None` if there is none (the connection is then closed).
    fn hand_to_other(&self, from: usize, me: usize, sock: Socket, addr: SockAddr) -> Option<usize> {
        let group = self.inner.group.get()?;
        let j = self.next_live(from, me)?;
        let token = *self.inner.tokens[j].get().expect("live loops are attached");
        group.post(j, move |lp| deliver(lp, token, sock, addr)).ok().map(|_| j)
    }
}

/// Runs on the target loop: its listener entry's `handle_accepted` gets the connection.
fn deliver(lp: &mut Loop, token: Token, sock: Socket, addr: SockAddr) {
    if lp.deliver_accepted(token, sock, addr).is_err() {
        log::debug!(target: "sockloop", "a handed-over connection found its loop's listener closed");
    }
}

/// The dispatcher of each loop's listener entry: the loop's own server dispatcher `D`, plus
/// what the [`Sharing`] needs. With [`Sharing::ReusePort`] it is `D` exactly; with
/// [`Sharing::Handoff`] the acceptor's accepts are spread over the loops, and the other loops
/// do not watch their (shared) socket. [`get_mut::<D>`](crate::LoopHandle::get_mut) and
/// `for_each_mut::<D>` see through it.
///
/// ```
/// use sockloop::group::{LoopGroup, SharedListener, Sharing};
/// struct Server(u32);
/// impl sockloop::Dispatcher for Server {}
/// let l = SharedListener::bind("127.0.0.1:0".parse().unwrap(), 16, 1, Sharing::ReusePort)?;
/// let group = LoopGroup::builder().threads(1).start(move |lp, m| {
///     let t = l.attach(lp, m, Server(7))?;
///     assert_eq!(lp.get_mut::<Server>(t).unwrap().0 .0, 7);
///     Ok(())
/// })?;
/// # group.handle().shutdown(std::time::Duration::ZERO); group.join()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Served<D> {
    inner: D,
    shared: SharedListener,
    me: usize,
    /// Handoff: the loop the next connection goes to.
    next: usize,
}

impl<D: Dispatcher> Served<D> {
    fn accepting_here(&self) -> bool {
        let s = &self.shared.inner;
        s.sharing == Sharing::ReusePort || s.acceptor.load(Ordering::Acquire) == self.me
    }

    /// Handoff: one accepted connection to the next live loop (this one included).
    fn hand(&mut self, sock: Socket, addr: SockAddr, cx: &mut Context<'_>) -> io::Result<()> {
        let s = &self.shared.inner;
        let n = s.tokens.len();
        let target = s.group.get().and_then(|g| {
            (0..n).map(|k| (self.next + k) % n).find(|&j| j == self.me || self.shared.live(g, j))
        });
        let target = target.unwrap_or(self.me);
        self.next = (target + 1) % n;
        if target == self.me {
            return self.inner.handle_accepted(sock, addr, cx);
        }
        let token = *s.tokens[target].get().expect("live loops are attached");
        let group = s.group.get().expect("checked above");
        // A failed post drops the closure and with it the connection: the target just stopped.
        let _ = group.post(target, move |lp| deliver(lp, token, sock, addr));
        Ok(())
    }
}

/// Connections a handoff acceptor takes per readiness event before it lets other channels run.
const ACCEPT_BATCH: usize = 64;

impl<D: Dispatcher> Dispatcher for Served<D> {
    fn readable(&self) -> bool {
        self.accepting_here() && self.inner.readable()
    }
    fn writable(&self) -> bool {
        self.inner.writable()
    }
    fn volatile(&self) -> bool {
        self.inner.volatile()
    }
    fn holds_output(&self) -> bool {
        self.inner.holds_output()
    }
    forward_handlers!(inner => handle_read, handle_write, handle_expt, handle_connect);
    fn handle_accept(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if self.shared.inner.sharing == Sharing::ReusePort {
            return self.inner.handle_accept(cx);
        }
        for _ in 0..ACCEPT_BATCH {
            match cx.channel.accept() {
                Ok(Some((sock, addr))) => self.hand(sock, addr, cx)?,
                Ok(None) => break,
                Err(e) if crate::dispatcher::pause_if_out_of_descriptors(&e, cx) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
    forward_handlers!(inner => handle_accepted, handle_close, handle_error, handle_timeout, handle_shutdown,
        inner_mut);
}
