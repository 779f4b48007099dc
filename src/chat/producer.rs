//! Producers: output generated a chunk at a time (asynchat's `simple_producer` and the
//! producer fifo).

use std::collections::VecDeque;
use std::io;

/// asynchat's producer protocol: `more()` returns the next chunk of output, and an empty
/// chunk once exhausted. An error (a file that failed while being sent) reaches the channel's
/// `handle_error`, as an exception raised by `more()` did in asynchat.
///
/// ```
/// use sockloop::chat::Producer;
/// struct Countdown(u8);
/// impl Producer for Countdown {
///     fn more(&mut self) -> std::io::Result<Vec<u8>> {
///         if self.0 == 0 { return Ok(Vec::new()) }
///         self.0 -= 1;
///         Ok(format!("{}\n", self.0).into_bytes())
///     }
/// }
/// let mut p = Countdown(2);
/// assert_eq!(p.more()?, b"1\n");
/// assert_eq!(p.more()?, b"0\n");
/// assert!(p.more()?.is_empty());
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait Producer: 'static {
    /// The next chunk; empty when there is no more.
    ///
    /// ```
    /// use sockloop::chat::Producer;
    /// let mut once = b"hi".to_vec();
    /// assert_eq!(once.more()?, b"hi");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    fn more(&mut self) -> io::Result<Vec<u8>>;

    /// Whether the next output goes straight to the channel's descriptor through
    /// [`send_to`](Producer::send_to) (a file sent with `sendfile(2)`, see
    /// [`FileProducer`](crate::chat::FileProducer)) rather than through [`more`](Producer::more).
    /// Asked before each chunk; default `false`. Not in asynchat.
    ///
    /// ```
    /// use sockloop::chat::Producer;
    /// assert!(!b"bytes".to_vec().sends_directly());
    /// ```
    fn sends_directly(&self) -> bool {
        false
    }

    /// Sends the next part straight to `channel` and returns how many bytes went (0: the
    /// channel takes nothing now; the chat waits for it to be writable). Called only while
    /// [`sends_directly`](Producer::sends_directly) is true and nothing is queued on the
    /// channel, so output stays in order. An error ends the channel as an error from
    /// [`more`](Producer::more) does. Default: sends nothing.
    ///
    /// ```
    /// use sockloop::chat::Producer;
    /// let (a, _b) = std::os::unix::net::UnixStream::pair()?;
    /// let mut ch = sockloop::Channel::from(a);
    /// assert_eq!(b"bytes".to_vec().send_to(&mut ch)?, 0);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    fn send_to(&mut self, channel: &mut crate::Channel) -> io::Result<usize> {
        let _ = channel;
        Ok(0)
    }
}

/// A byte string is a producer that yields itself once (asynchat accepts plain bytes as a
/// producer).
///
/// ```
/// use sockloop::chat::Producer;
/// let mut p = b"abc".to_vec();
/// assert_eq!(p.more()?, b"abc");
/// assert!(p.more()?.is_empty());
/// # Ok::<(), std::io::Error>(())
/// ```
impl Producer for Vec<u8> {
    fn more(&mut self) -> io::Result<Vec<u8>> {
        Ok(std::mem::take(self))
    }
}

/// asynchat's `simple_producer(data, buffer_size=512)`: `data` in chunks of `buffer_size`.
///
/// ```
/// use sockloop::chat::{Producer, SimpleProducer};
/// let mut p = SimpleProducer::with_buffer_size(b"hello world".to_vec(), 8);
/// assert_eq!(p.more()?, b"hello wo");
/// assert_eq!(p.more()?, b"rld");
/// assert!(p.more()?.is_empty());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct SimpleProducer {
    data: Vec<u8>,
    pos: usize,
    buffer_size: usize,
}

impl SimpleProducer {
    /// `data` in chunks of 512 bytes, asynchat's default.
    ///
    /// ```
    /// use sockloop::chat::{Producer, SimpleProducer};
    /// assert_eq!(SimpleProducer::new(vec![0; 600]).more()?.len(), 512);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(data: Vec<u8>) -> SimpleProducer {
        SimpleProducer::with_buffer_size(data, 512)
    }

    /// `data` in chunks of `buffer_size` (at least 1).
    ///
    /// ```
    /// use sockloop::chat::{Producer, SimpleProducer};
    /// assert_eq!(SimpleProducer::with_buffer_size(b"abc".to_vec(), 1).more()?, b"a");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn with_buffer_size(data: Vec<u8>, buffer_size: usize) -> SimpleProducer {
        SimpleProducer { data, pos: 0, buffer_size: buffer_size.max(1) }
    }
}

impl Producer for SimpleProducer {
    fn more(&mut self) -> io::Result<Vec<u8>> {
        let end = (self.pos + self.buffer_size).min(self.data.len());
        let chunk = self.data[self.pos..end].to_vec();
        self.pos = end;
        Ok(chunk)
    }
}

/// The producer fifo: producers drained in order, each until exhausted.
#[derive(Default)]
pub(crate) struct Fifo {
    queue: VecDeque<Box<dyn Producer>>,
}

impl Fifo {
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn push(&mut self, p: Box<dyn Producer>) {
        self.queue.push_back(p);
    }

    pub fn clear(&mut self) {
        self.queue.clear();
    }

    /// Whether the front producer sends straight to the channel.
    pub fn front_sends_directly(&self) -> bool {
        self.queue.front().is_some_and(|p| p.sends_directly())
    }

    /// The front producer's [`Producer::send_to`]; a producer that fails is dropped with its
    /// error.
    pub fn send_front(&mut self, channel: &mut crate::Channel) -> io::Result<usize> {
        let Some(front) = self.queue.front_mut() else { return Ok(0) };
        front.send_to(channel).inspect_err(|_| {
            self.queue.pop_front();
        })
    }

    /// The next non-empty chunk, dropping exhausted producers; `None` when all are done or the
    /// front one sends directly. A
    /// producer that fails is dropped with its error.
    pub fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        while let Some(front) = self.queue.front_mut() {
            if front.sends_directly() {
                return Ok(None); // its bytes go by send_to, never through the channel's buffer
            }
            match front.more() {
                Ok(chunk) if !chunk.is_empty() => return Ok(Some(chunk)),
                Ok(_) => {}
                Err(e) => {
                    self.queue.pop_front();
                    return Err(e);
                }
            }
            self.queue.pop_front();
        }
        Ok(None)
    }
}

/// A range of shared bytes (an `Rc<[u8]>`, an `Arc<Vec<u8>>`, a `&'static [u8]` ...) as a
/// producer that sends straight from them: [`send_to`](Producer::send_to) hands the slice to
/// the socket, so many channels can send one cached body, or one broadcast, with no copy per
/// channel and no buffer per channel (the kernel copies into the socket as it has room). Not
/// in asynchat, whose producers always returned new strings; [`more`](Producer::more) still
/// works, in chunks of 64 KiB.
///
/// ```
/// use sockloop::chat::{Producer, SharedProducer};
/// use std::rc::Rc;
/// let body: Rc<[u8]> = Rc::from(&b"hello, world"[..]);
/// let (a, b) = std::os::unix::net::UnixStream::pair()?;
/// let mut ch = sockloop::Channel::from(a);
/// let mut p = SharedProducer::new(body.clone(), 7..12);
/// assert!(p.sends_directly());
/// assert_eq!(p.send_to(&mut ch)?, 5);
/// assert!(!p.sends_directly());
/// let mut got = [0u8; 5];
/// std::io::Read::read_exact(&mut &b, &mut got)?;
/// assert_eq!(&got, b"world");
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct SharedProducer<B> {
    bytes: B,
    pos: usize,
    end: usize,
}

impl<B: AsRef<[u8]> + 'static> SharedProducer<B> {
    /// `range` of `bytes` (clipped to their length).
    ///
    /// ```
    /// use sockloop::chat::{Producer, SharedProducer};
    /// let mut p = SharedProducer::new(&b"abcdef"[..], 2..99);
    /// assert_eq!(p.more()?, b"cdef");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(bytes: B, range: std::ops::Range<usize>) -> SharedProducer<B> {
        let len = bytes.as_ref().len();
        let end = range.end.min(len);
        SharedProducer { bytes, pos: range.start.min(end), end }
    }
}

impl<B: AsRef<[u8]> + 'static> Producer for SharedProducer<B> {
    fn more(&mut self) -> io::Result<Vec<u8>> {
        let end = self.end.min(self.pos + 64 * 1024);
        let chunk = self.bytes.as_ref()[self.pos..end].to_vec();
        self.pos = end;
        Ok(chunk)
    }

    fn sends_directly(&self) -> bool {
        self.pos < self.end
    }

    fn send_to(&mut self, channel: &mut crate::Channel) -> io::Result<usize> {
        let n = channel.send(&self.bytes.as_ref()[self.pos..self.end])?;
        self.pos += n;
        Ok(n)
    }
}
