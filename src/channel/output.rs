//! The output a channel accepted but the kernel has not taken yet.

/// Output accepted by [`Channel::send_all`](crate::Channel::send_all) but not yet sent.
#[derive(Default)]
pub(super) struct OutBuf {
    bytes: Vec<u8>,
    start: usize,
}

impl OutBuf {
    pub fn pending(&self) -> &[u8] {
        &self.bytes[self.start..]
    }

    pub fn len(&self) -> usize {
        self.bytes.len() - self.start
    }

    pub fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.bytes.len() {
            self.bytes.clear();
            self.start = 0;
            // An idle channel should not keep a large burst's buffer.
            if self.bytes.capacity() > 64 * 1024 {
                self.bytes = Vec::new();
            }
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start >= self.bytes.len() / 2 {
            self.bytes.drain(..self.start);
            self.start = 0;
        }
        self.bytes.extend_from_slice(data);
    }
}

/// rustls writes its records straight into the queue.
#[cfg(feature = "tls")]
impl std::io::Write for OutBuf {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.push(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
