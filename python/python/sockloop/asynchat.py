"""sockloop's `asynchat`: record-oriented channels over sockloop's asyncore.

An `async_chat` cuts its input into records at a terminator (a byte string, a byte count, or
None for "no records") and hands them to `collect_incoming_data` / `found_terminator`; its
output is a queue of byte strings and producers (objects with `more()`), written out as the
socket accepts it.  The specification is `docs/python-compat.md`, section 5.
"""

from collections import deque

from . import asyncore

__all__ = ["async_chat", "simple_producer", "find_prefix_at_end"]


def find_prefix_at_end(haystack, needle):
    """How many bytes at the end of `haystack` could begin `needle` (0 when none could)."""
    for size in range(len(needle) - 1, 0, -1):
        if haystack.endswith(needle[:size]):
            return size
    return 0


_NEGATIVE_COUNT = "the number of received bytes must be positive"
_BYTES_LIKE = (bytes, bytearray, memoryview)
_SLICED = _BYTES_LIKE + (str,)


class async_chat(asyncore.dispatcher):
    """A dispatcher that reads records and writes queued data and producers."""

    # How much one recv() asks for, and how much one send() is given.
    ac_in_buffer_size = 65536
    ac_out_buffer_size = 65536

    # With use_encoding set, str terminators and str output are encoded with `encoding`.
    use_encoding = 0
    encoding = "latin-1"

    terminator = None

    def __init__(self, sock=None, map=None):
        self.producer_fifo = deque()    # bytes, producers, and None (close_when_done)
        self.incoming = []              # pieces of the current record
        self.ac_in_buffer = b""         # input not yet cut into records
        asyncore.dispatcher.__init__(self, sock, map)

    # -- records in ---------------------------------------------------------------------
    def set_terminator(self, term):
        """b'\\r\\n' and the like, a number of bytes, or None (everything is data)."""
        if isinstance(term, int):
            if term < 0:
                raise ValueError(_NEGATIVE_COUNT)
        elif isinstance(term, str) and self.use_encoding:
            term = term.encode(self.encoding)
        self.terminator = term

    def get_terminator(self):
        """The terminator now in force (a count decreases as bytes arrive)."""
        return self.terminator

    def _get_data(self):
        joined = b"".join(self.incoming)
        self.incoming.clear()
        return joined

    def _collect_incoming_data(self, data):
        self.incoming.append(data)

    def collect_incoming_data(self, data):
        """Keeps `data` for the record (join them with _get_data()); override at will."""
        self._collect_incoming_data(data)

    def handle_read(self):
        size = self.ac_in_buffer_size
        try:
            data = self.recv(size)
        except BlockingIOError:
            return              # woken for nothing: not an error
        except OSError:
            self.handle_error()
            return
        if self.use_encoding and isinstance(data, str):
            data = data.encode(self.encoding)
        buf = self.ac_in_buffer + data if self.ac_in_buffer else data
        # Each round re-reads the buffer and the terminator: the callbacks may change both.
        while buf:
            term = self.get_terminator()
            if not term:
                # No records: everything is data.
                self.ac_in_buffer = b""
                self.collect_incoming_data(buf)
            elif not isinstance(term, int):
                at = buf.find(term)
                if at < 0:
                    # Keep a tail that may be the start of the terminator for the next read.
                    keep = find_prefix_at_end(buf, term)
                    cut = len(buf) - keep
                    self.ac_in_buffer = buf[cut:] if keep else b""
                    if cut:
                        self.collect_incoming_data(buf[:cut])
                    break
                self.ac_in_buffer = buf[at + len(term):]
                if at:
                    self.collect_incoming_data(buf[:at])
                self.found_terminator()
            elif len(buf) < term:
                # A count not reached yet: take it all, count down.
                self.ac_in_buffer = b""
                self.terminator = term - len(buf)
                self.collect_incoming_data(buf)
            else:
                self.ac_in_buffer = buf[term:]
                self.terminator = 0
                self.collect_incoming_data(buf[:term])
                self.found_terminator()
            buf = self.ac_in_buffer

    def found_terminator(self):
        """Called at the end of each record; subclasses must define it."""
        raise NotImplementedError("must be implemented in subclass")

    # -- data out -------------------------------------------------------------------------
    def push(self, data):
        if not isinstance(data, _BYTES_LIKE):
            raise TypeError("data argument must be byte-ish (%r)" % (type(data),))
        step = self.ac_out_buffer_size
        fifo = self.producer_fifo
        idle = not fifo
        if len(data) <= step:
            fifo.append(data)
        else:
            fifo.extend(data[i:i + step] for i in range(0, len(data), step))
        self.initiate_send()
        if idle and fifo:
            # Output left over: the core must watch this channel for writing.
            asyncore._note_interest(self)

    def push_with_producer(self, producer):
        """Queues an object whose more() hands out bytes until it returns b''."""
        fifo = self.producer_fifo
        idle = not fifo
        fifo.append(producer)
        self.initiate_send()
        if idle and fifo:
            asyncore._note_interest(self)

    def close_when_done(self):
        """Closes the channel once everything queued before this call has been sent."""
        fifo = self.producer_fifo
        if not fifo:
            asyncore._note_interest(self)
        fifo.append(None)

    def discard_buffers(self):
        self.ac_in_buffer = b""
        self.incoming.clear()
        self.producer_fifo.clear()

    def writable(self):
        return bool(self.producer_fifo) or not self.connected

    def readable(self):
        return True

    def handle_close(self):
        """The peer has gone (or close_when_done's marker was reached): close."""
        self.close()

    def handle_write(self):
        self.initiate_send()

    def initiate_send(self):
        fifo = self.producer_fifo
        while fifo and self.connected:
            head = fifo[0]
            if head is None:
                # close_when_done()'s marker reached: all before it has gone out.
                fifo.popleft()
                self.handle_close()
                return
            if not isinstance(head, _SLICED) and hasattr(head, "more"):
                # A producer: its next piece goes in front of it.
                piece = head.more()
                if piece:
                    fifo.appendleft(piece)
                else:
                    fifo.popleft()
                continue
            if not head:
                fifo.popleft()
                continue
            limit = self.ac_out_buffer_size
            chunk = head[:limit] if len(head) > limit else head
            if self.use_encoding and isinstance(chunk, str):
                chunk = chunk.encode(self.encoding)
            try:
                sent = self.send(chunk)
            except OSError:
                self.handle_error()
                return
            if sent:
                if chunk is head and sent >= len(head):
                    fifo.popleft()
                else:
                    fifo[0] = head[sent:]
            return


# The core answers readable()/writable() itself for channels that leave these two alone.
asyncore._NATIVE_ANSWERS.update(chat_readable=async_chat.readable,
                                chat_writable=async_chat.writable)


class simple_producer:
    """Hands out `data` in pieces of `buffer_size` bytes."""

    def __init__(self, data, buffer_size=512):
        self.data, self.buffer_size = data, buffer_size

    def more(self):
        piece, self.data = self.data[:self.buffer_size], self.data[self.buffer_size:]
        return piece
