//! asyncore's `file_wrapper` and `file_dispatcher`: pipes, ttys and files in the loop (Unix).

use crate::Channel;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

/// asyncore's `file_wrapper`: a socket-like object over a duplicate of a descriptor, so closing
/// the original does not affect it (and closing it does not affect the original).
///
/// ```
/// use std::io::Write;
/// let (reader, mut writer) = std::io::pipe()?;
/// let mut w = sockloop::FileWrapper::new(&reader)?;
/// assert_ne!(w.fileno(), Some(std::os::fd::AsRawFd::as_raw_fd(&reader)));
/// drop(reader); // the duplicate still reads
/// writer.write_all(b"data")?;
/// let mut buf = [0u8; 4];
/// assert_eq!(w.recv(&mut buf)?, 4);
/// w.close();
/// assert!(w.recv(&mut buf).is_err());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct FileWrapper {
    file: Option<File>,
}

impl FileWrapper {
    /// Duplicates `fd` (close-on-exec) and wraps the duplicate.
    ///
    /// ```
    /// let f = std::fs::File::open("/dev/null")?;
    /// let w = sockloop::FileWrapper::new(&f)?;
    /// assert!(w.fileno().is_some());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(fd: impl AsFd) -> io::Result<FileWrapper> {
        let dup = fd.as_fd().try_clone_to_owned()?;
        Ok(FileWrapper { file: Some(File::from(dup)) })
    }

    fn file(&mut self) -> io::Result<&mut File> {
        self.file.as_mut().ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))
    }

    /// `recv(n)`: reads up to `buf.len()` bytes.
    ///
    /// ```
    /// let mut w = sockloop::FileWrapper::new(std::fs::File::open("/dev/null")?)?;
    /// assert_eq!(w.recv(&mut [0u8; 8])?, 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file()?.read(buf)
    }

    /// `send(data)`: writes what the descriptor takes.
    ///
    /// ```
    /// let mut w = sockloop::FileWrapper::new(std::fs::OpenOptions::new().write(true).open("/dev/null")?)?;
    /// assert_eq!(w.send(b"abc")?, 3);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn send(&mut self, data: &[u8]) -> io::Result<usize> {
        self.file()?.write(data)
    }

    /// asyncore `close()`: closes the duplicate. Closing twice is harmless.
    ///
    /// ```
    /// let mut w = sockloop::FileWrapper::new(std::fs::File::open("/dev/null")?)?;
    /// w.close();
    /// w.close();
    /// assert_eq!(w.fileno(), None);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn close(&mut self) {
        self.file = None;
    }

    /// asyncore `fileno()`: the duplicate's number, `None` once closed.
    ///
    /// ```
    /// let w = sockloop::FileWrapper::new(std::fs::File::open("/dev/null")?)?;
    /// assert!(w.fileno().unwrap() > 2);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn fileno(&self) -> Option<RawFd> {
        self.file.as_ref().map(|f| f.as_raw_fd())
    }

    /// Turns the wrapper into a loop channel (asyncore's `file_dispatcher.set_file`).
    ///
    /// ```
    /// let w = sockloop::FileWrapper::new(std::fs::File::open("/dev/null")?)?;
    /// assert!(w.into_channel()?.connected());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn into_channel(self) -> io::Result<Channel> {
        let file = self.file.ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?;
        Channel::from_fd(OwnedFd::from(file))
    }
}

/// `read(n)`, as on asyncore's `file_wrapper`.
impl Read for FileWrapper {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv(buf)
    }
}

/// `write(data)`, as on asyncore's `file_wrapper`.
impl Write for FileWrapper {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.send(data)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// asyncore's `file_dispatcher(fd)`: a channel over a duplicate of `fd` (a pipe, a tty, a
/// regular file), made non-blocking, for a [`Dispatcher`](crate::Dispatcher) to handle. Its
/// `recv`/`send` are `read`/`write`. Every backend serves it, epoll included (which cannot watch
/// regular files: those are treated as always ready, as select and poll report them).
///
/// ```
/// let (reader, _writer) = std::io::pipe()?;
/// let ch = sockloop::file_dispatcher(&reader)?;
/// assert!(ch.connected());
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn file_dispatcher(fd: impl AsFd) -> io::Result<Channel> {
    FileWrapper::new(fd)?.into_channel()
}
