//! [`FileProducer`]: a byte range of a file as chat output, sent with `sendfile(2)` from the
//! page cache, or read and sent when asked to copy.

use super::producer::Producer;
use crate::Channel;
use std::borrow::Borrow;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Most bytes asked of one `sendfile` call (the socket's buffer takes far less at a time).
const MAX_SENDFILE: u64 = 1 << 30;

/// A byte range of a file as a [`Producer`] (what medusa's `file_producer` was for asynchat).
///
/// By default the range goes straight from the page cache to the socket with `sendfile(2)`
/// (where `sendfile` refuses the pair, `EINVAL` or `ENOSYS`, it reads and sends instead)
/// ([`Channel::send_file`]): no copy through user space and no buffer per connection, so a
/// slow reader costs no memory; the chat sends when the socket is writable and stops when it
/// is full (backpressure), and the channel's soft limit is never approached since nothing is
/// queued on it. [`copy`](FileProducer::copy) makes it read chunks with `pread` and hand them to
/// the channel's output instead, for a channel that cannot take `sendfile` (TLS) or to compare.
///
/// The file may be any `Borrow<File>`: a `File`, or an `Rc<File>` shared with an open-file
/// cache. Reads are positioned (`pread`, `sendfile` with an offset), so the descriptor's own
/// offset is never used and one descriptor can serve many connections at once.
///
/// A file that ends before the range does (truncated while being sent) or fails to read makes
/// the producer fail with [`UnexpectedEof`](io::ErrorKind::UnexpectedEof) or the read's error:
/// the channel's `handle_error` gets it (a length promised to the peer can no longer be kept),
/// the other channels go on.
///
/// ```
/// use sockloop::chat::{AsyncChat, ChatContext, ChatHandler, FileProducer};
/// use sockloop::{Channel, Loop};
/// use std::io::Read;
///
/// struct Quiet;
/// impl ChatHandler for Quiet {
///     fn collect_incoming_data(&mut self, _: &[u8]) {}
///     fn found_terminator(&mut self, _: &mut ChatContext<'_>) -> std::io::Result<()> { Ok(()) }
/// }
///
/// let path = std::env::temp_dir().join(format!("sockloop-file-producer-doc-{}", std::process::id()));
/// std::fs::write(&path, vec![b'x'; 300_000])?;
/// let (mut peer, ours) = std::os::unix::net::UnixStream::pair()?;
/// let reader = std::thread::spawn(move || {
///     let mut got = Vec::new();
///     peer.read_to_end(&mut got).map(|_| got)
/// });
/// let mut lp = Loop::new()?;
/// let token = lp.add(Channel::from(ours), AsyncChat::new(Quiet))?;
/// let (chat, channel) = lp.get_mut::<AsyncChat<Quiet>>(token).unwrap();
/// chat.push(channel, b"head\n")?;
/// let file = std::fs::File::open(&path)?;
/// chat.push_with_producer(channel, FileProducer::new(file, 1000, 200_000))?;
/// channel.close_when_done(); // closes once the file is sent
/// lp.run()?;
/// let got = reader.join().unwrap()?;
/// assert_eq!(got.len(), 5 + 200_000);
/// assert!(got.starts_with(b"head\nxxx"));
/// std::fs::remove_file(&path)?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct FileProducer<F> {
    file: F,
    offset: u64,
    end: u64,
    chunk: usize,
    direct: bool,
}

impl<F: Borrow<File> + 'static> FileProducer<F> {
    /// `len` bytes of `file` from `offset`, sent with `sendfile`.
    ///
    /// ```
    /// let f = std::fs::File::open("Cargo.toml")?;
    /// let p = sockloop::chat::FileProducer::new(f, 0, 10);
    /// assert_eq!(p.remaining(), 10);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(file: F, offset: u64, len: u64) -> FileProducer<F> {
        FileProducer { file, offset, end: offset.saturating_add(len), chunk: 64 * 1024, direct: true }
    }

    /// Reads and sends through the channel's output instead of `sendfile`, `chunk` bytes
    /// (at least 1) at a time.
    ///
    /// ```
    /// use sockloop::chat::{FileProducer, Producer};
    /// let f = std::fs::File::open("Cargo.toml")?;
    /// let mut p = FileProducer::new(f, 0, 10).copy(4);
    /// assert!(!p.sends_directly());
    /// assert_eq!(p.more()?, b"[pac");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn copy(mut self, chunk: usize) -> FileProducer<F> {
        self.direct = false;
        self.chunk = chunk.max(1);
        self
    }

    /// Bytes of the range not sent yet.
    ///
    /// ```
    /// use sockloop::chat::{FileProducer, Producer};
    /// let f = std::fs::File::open("Cargo.toml")?;
    /// let mut p = FileProducer::new(f, 0, 10).copy(64);
    /// p.more()?;
    /// assert_eq!(p.remaining(), 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn remaining(&self) -> u64 {
        self.end - self.offset
    }

    fn shrank(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the file ended at {} bytes while being sent (range ends at {})", self.offset, self.end),
        )
    }
}

impl<F: Borrow<File> + 'static> Producer for FileProducer<F> {
    /// The next chunk read with `pread` (the range by `more` even when it would use
    /// `sendfile`, for a caller that drives it by hand).
    fn more(&mut self) -> io::Result<Vec<u8>> {
        let want = self.remaining().min(self.chunk as u64) as usize;
        if want == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; want];
        let mut got = 0;
        while got < want {
            match self.file.borrow().read_at(&mut buf[got..], self.offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.offset += got as u64;
        if got < want {
            return Err(self.shrank());
        }
        Ok(buf)
    }

    fn sends_directly(&self) -> bool {
        self.direct && self.offset < self.end
    }

    fn send_to(&mut self, channel: &mut Channel) -> io::Result<usize> {
        let count = self.remaining().min(MAX_SENDFILE) as usize;
        let n = match channel.send_file(self.file.borrow(), &mut self.offset, count) {
            Ok(n) => n,
            // A file or a channel sendfile cannot serve: read and send instead, from here on
            // (the socket is writable, so the chat goes on at the next pass).
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP)) => {
                self.direct = false;
                return Ok(0);
            }
            Err(e) => return Err(e),
        };
        if n == 0 && channel.connected() && !channel.peer_closed() {
            // Nothing went: a full socket, or the end of a file that shrank.
            if self.file.borrow().metadata()?.len() <= self.offset {
                return Err(self.shrank());
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    fn temp(name: &str, data: &[u8]) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("sockloop-fp-{name}-{}", std::process::id()));
        std::fs::write(&p, data).unwrap();
        p
    }

    #[test]
    fn copy_reads_the_range_and_fails_on_a_short_file() {
        let p = temp("copy", b"0123456789");
        let f = Rc::new(File::open(&p).unwrap());
        let mut fp = FileProducer::new(f.clone(), 2, 5).copy(3);
        assert_eq!(fp.more().unwrap(), b"234");
        assert_eq!(fp.more().unwrap(), b"56");
        assert!(fp.more().unwrap().is_empty());
        let mut long = FileProducer::new(f, 8, 5).copy(64);
        assert_eq!(long.more().unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn falls_back_to_copy_where_sendfile_refuses() {
        let src = temp("fb-src", b"0123456789");
        let dst = std::env::temp_dir().join(format!("sockloop-fp-fb-dst-{}", std::process::id()));
        // sendfile(2) refuses an O_APPEND destination with EINVAL.
        let out = std::fs::OpenOptions::new().append(true).create(true).open(&dst).unwrap();
        let mut ch = Channel::from_fd(std::os::fd::OwnedFd::from(out)).unwrap();
        let mut fp = FileProducer::new(File::open(&src).unwrap(), 2, 5);
        assert_eq!(fp.send_to(&mut ch).unwrap(), 0);
        assert!(!fp.sends_directly());
        assert_eq!(fp.more().unwrap(), b"23456");
        std::fs::remove_file(src).unwrap();
        std::fs::remove_file(dst).unwrap();
    }

    #[test]
    fn sendfile_past_the_end_fails() {
        let p = temp("short", b"0123456789");
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut ch = Channel::from(a);
        let mut fp = FileProducer::new(File::open(&p).unwrap(), 4, 100);
        assert_eq!(fp.send_to(&mut ch).unwrap(), 6);
        assert!(fp.sends_directly());
        assert_eq!(fp.send_to(&mut ch).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        std::fs::remove_file(p).unwrap();
    }
}
