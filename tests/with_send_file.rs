//! CONFORMANCE "asyncore": dispatcher_with_send (`WithSend`), file_wrapper (`FileWrapper`) and
//! file_dispatcher (`file_dispatcher`), over every backend and family where a loop is involved.
//!
//! Not tested, because Rust rules them out:
//! - test_close_twice's second half (the descriptor closed with os.close behind the wrapper's
//!   back, then `close` reporting EBADF once): the wrapper owns its duplicate as an `OwnedFd`, so
//!   safe code cannot close it elsewhere.
//! - test_resource_warning's warning: Rust has no garbage collector; dropping the wrapper closes
//!   the descriptor (tested below as `resource_warning_drop_closes`).

mod support;

use sockloop::{file_dispatcher, Backend, Channel, Context, Dispatcher, FileWrapper, RunOptions, WithSend};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;
use support::*;

/// Sends one more piece from handle_connect, through the buffered `send_all`.
struct Sender {
    last_piece: Vec<u8>,
    connected: Rc<std::cell::Cell<bool>>,
}

impl Dispatcher for Sender {
    fn handle_connect(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.connected.set(true);
        let piece = std::mem::take(&mut self.last_piece);
        cx.channel.send_all(&piece)
    }
    fn handle_read(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        cx.channel.recv(cx.scratch).map(|_| ())
    }
}

// CPython DispatcherWithSendTests.test_send: data handed to send before the connection is
// established, and in several pieces, all arrives in order, driven by poll passes until the
// out buffer is empty; and the channel is writable only while output is pending (an idle
// WithSend channel does not wake the loop).
fn with_send_send(backend: Backend) {
    each_family(&Family::ALL, |family| {
        let mut lp = new_loop(backend);
        let (listener, ep) = std_listener(family);
        let reader = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(DEADLINE)).unwrap();
            read_to_end(&s)
        });
        let mut rng = Rng(0x5eed);
        let pieces: Vec<Vec<u8>> = (0..5).map(|_| rng.bytes(300_000)).collect();
        let mut ch = connecting_channel(&ep);
        for p in &pieces[..4] {
            ch.send_all(p).unwrap(); // before the connect completes: all queued
        }
        assert_eq!(ch.pending_output(), 4 * 300_000);
        assert_eq!(ch.out_buffer(), &pieces[..4].concat()[..]);
        let connected = Rc::new(std::cell::Cell::new(false));
        let d = WithSend::new(Sender { last_piece: pieces[4].clone(), connected: connected.clone() });
        assert!(!d.writable());
        let t = lp.add(ch, d).unwrap();
        drive(&mut lp, "the out buffer to empty", |lp| {
            connected.get() && lp.channel_mut(t).unwrap().pending_output() == 0
        });
        assert!(lp.get_mut::<Sender>(t).is_some(), "get_mut sees through WithSend");
        // Nothing pending: not writable, so the loop sleeps.
        assert_quiet(&mut lp);
        lp.close_channel(t);
        let got = reader.join().unwrap();
        assert_eq!(got.len(), 5 * 300_000);
        assert!(got == pieces.concat(), "every byte, in order");
    });
}

fn data_file(dir: &TempDir, content: &[u8]) -> std::path::PathBuf {
    let path = dir.path("data.bin");
    std::fs::write(&path, content).unwrap();
    path
}

const DATA: &[u8] = b"It's not dead, it's sleeping!\nWhy would it be dead?\n";

// CPython FileWrapperTest.test_recv: the wrapper duplicates the descriptor; recv(n) and read(n)
// read through it, also after the original is closed; after close a read fails.
#[test]
fn file_wrapper_recv() {
    let dir = TempDir::new("fw");
    let file = std::fs::File::open(data_file(&dir, DATA)).unwrap();
    let fd = file.as_raw_fd();
    let mut w = FileWrapper::new(&file).unwrap();
    assert_ne!(w.fileno(), Some(fd), "a duplicate");
    drop(file);
    let mut buf = [0u8; 13];
    assert_eq!(w.recv(&mut buf).unwrap(), 13);
    assert_eq!(&buf, &DATA[..13]);
    assert_eq!(w.read(&mut buf).unwrap(), 13);
    assert_eq!(&buf, &DATA[13..26]);
    w.close();
    assert_eq!(w.read(&mut buf).unwrap_err().raw_os_error(), Some(libc::EBADF));
    assert_eq!(w.recv(&mut buf).unwrap_err().raw_os_error(), Some(libc::EBADF));
}

// CPython FileWrapperTest.test_send: write and send go through the duplicate; closing the
// original does not affect it.
#[test]
fn file_wrapper_send() {
    let dir = TempDir::new("fw");
    let path = data_file(&dir, DATA);
    let file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
    let mut w = FileWrapper::new(&file).unwrap();
    drop(file);
    w.write_all(b"Come again?").unwrap();
    assert_eq!(w.send(b"Now is not the time.").unwrap(), 20);
    w.close();
    assert_eq!(std::fs::read(&path).unwrap(), [DATA, b"Come again?", b"Now is not the time."].concat());
}

// CPython FileWrapperTest.test_dispatcher: a file_dispatcher over a regular file delivers the
// whole content through handle_read within two passes, on every backend (epoll cannot watch a
// regular file and must still serve it).
fn file_dispatcher_regular_file(backend: Backend) {
    let dir = TempDir::new("fd");
    let file = std::fs::File::open(data_file(&dir, DATA)).unwrap();
    let mut lp = new_loop(backend);
    let c = Counts::new();
    lp.add(file_dispatcher(&file).unwrap(), Probe::new(&c)).unwrap();
    lp.run_with(RunOptions::new().timeout(Duration::from_millis(10)).count(2)).unwrap();
    assert_eq!(&*c.data.borrow(), DATA);
    assert_eq!(c.error.get(), 0);
}

// file_dispatcher over a pipe: reads as the writer writes, handle_close when the writer closes.
fn file_dispatcher_pipe(backend: Backend) {
    let (r, mut w) = std::io::pipe().unwrap();
    let mut lp = new_loop(backend);
    let c = Counts::new();
    let t = lp.add(file_dispatcher(&r).unwrap(), Probe::new(&c)).unwrap();
    drop(r); // the dispatcher has its own duplicate
    w.write_all(b"through the pipe").unwrap();
    drive(&mut lp, "the pipe data", |_| c.data.borrow().len() == 16);
    assert_eq!(c.close.get(), 0);
    drop(w);
    drive(&mut lp, "handle_close", |_| c.close.get() == 1);
    assert!(!lp.contains(t));
    assert_eq!(&*c.data.borrow(), b"through the pipe");
    assert_eq!(c.error.get(), 0);
}

// file_dispatcher's output side: send_all to a pipe arrives in order.
fn file_dispatcher_pipe_write(backend: Backend) {
    let (mut r, w) = std::io::pipe().unwrap();
    let mut lp = new_loop(backend);
    let mut ch = file_dispatcher(&w).unwrap();
    drop(w);
    let data = Rng(9).bytes(1 << 20);
    ch.send_all(&data).unwrap();
    struct Quiet;
    impl Dispatcher for Quiet {
        fn readable(&self) -> bool {
            false
        }
        fn writable(&self) -> bool {
            false
        }
    }
    let t = lp.add(ch, Quiet).unwrap();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        got
    });
    drive(&mut lp, "the output to drain", |lp| lp.channel_mut(t).unwrap().pending_output() == 0);
    lp.close_channel(t);
    assert!(reader.join().unwrap() == data);
}

backend_tests!(
    with_send_send,
    file_dispatcher_regular_file,
    file_dispatcher_pipe,
    file_dispatcher_pipe_write
);

// CPython FileWrapperTest.test_resource_warning: a wrapper dropped without close releases its
// descriptor (Drop). Shown with a pipe: once the original write end and the dropped wrapper's
// duplicate are both gone, the reader sees end of file.
#[test]
fn resource_warning_drop_closes() {
    let (mut r, w) = std::io::pipe().unwrap();
    let mut wrapper = FileWrapper::new(&w).unwrap();
    drop(w);
    wrapper.write_all(b"x").unwrap();
    drop(wrapper);
    let mut got = Vec::new();
    r.read_to_end(&mut got).unwrap(); // would block forever if the duplicate were leaked
    assert_eq!(got, b"x");
}

// CPython FileWrapperTest.test_close_twice: closing twice is harmless and leaves the wrapper
// closed.
#[test]
fn close_twice() {
    let (mut r, w) = std::io::pipe().unwrap();
    let mut wrapper = FileWrapper::new(&w).unwrap();
    drop(w);
    wrapper.close();
    assert_eq!(wrapper.fileno(), None);
    wrapper.close();
    assert_eq!(wrapper.fileno(), None);
    assert_eq!(wrapper.send(b"x").unwrap_err().raw_os_error(), Some(libc::EBADF));
    let mut got = Vec::new();
    r.read_to_end(&mut got).unwrap();
    assert!(got.is_empty());
    assert_eq!(wrapper.into_channel().unwrap_err().raw_os_error(), Some(libc::EBADF));
}

// A closed FileWrapper cannot become a channel, an open one becomes a connected file channel.
#[test]
fn file_wrapper_into_channel() {
    let (r, _w) = std::io::pipe().unwrap();
    let ch: Channel = FileWrapper::new(&r).unwrap().into_channel().unwrap();
    assert!(ch.connected() && ch.socket().is_none());
    assert!(format!("{ch:?}").starts_with("<Channel file fd="));
}
