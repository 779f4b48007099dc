"""sockloop's `asynchat`: record-oriented channels over sockloop's asyncore.

An `async_chat` cuts its input into records at a terminator (a byte string, a byte count, or
None for "no records") and hands them to `collect_incoming_data` / `found_terminator`; its
output is a queue of byte strings and producers (objects with `more()`), written out as the
socket accepts it.  The specification is `docs/python-compat.md`, section 5.
"""

from collections import deque

from . import _core, asyncore

__all__ = ["async_chat", "simple_producer", "find_prefix_at_end"]


def find_prefix_at_end(haystack, needle):
    """How many bytes at the end of `haystack` could begin `needle` (0 when none could)."""
    for size in range(len(needle) - 1, 0, -1):
        if haystack.endswith(needle[:size]):
            return size
    return 0


_NEGATIVE_COUNT = "the number of received bytes must be positive"


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

    # The terminator now in force (a count decreases as bytes arrive).
    get_terminator = _core.Channel._chat_get_terminator

    def _get_data(self):
        joined = b"".join(self.incoming)
        self.incoming.clear()
        return joined

    # collect_incoming_data(data) keeps a piece of the record: by default it calls
    # _collect_incoming_data, which appends to `incoming` (join with _get_data()).  Both are
    # native; override either at will.
    collect_incoming_data = _core.Channel._chat_collect_incoming_data
    _collect_incoming_data = _core.Channel._chat_collect_plain

    # Reads ac_in_buffer_size bytes through self.recv and cuts ac_in_buffer into records:
    # everything before the terminator goes to collect_incoming_data, then found_terminator()
    # runs (a count terminator counts down; None means no records).  Native.
    handle_read = _core.Channel._chat_handle_read

    def found_terminator(self):
        """Called at the end of each record; subclasses must define it."""
        raise NotImplementedError("must be implemented in subclass")

    # -- data out -------------------------------------------------------------------------
    # push(data) queues bytes (split into ac_out_buffer_size pieces) and calls
    # self.initiate_send(); push_with_producer(p) queues an object whose more() hands out
    # bytes until it returns b''.  Both native.
    push = _core.Channel._chat_push
    push_with_producer = _core.Channel._chat_push_with_producer

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

    handle_write = _core.Channel._handle_write_sends

    # At most one send from the head of producer_fifo: None there (close_when_done) closes,
    # a producer's more() is asked for its next piece, a str is encoded when use_encoding
    # is set.  Native.
    initiate_send = _core.Channel._chat_initiate_send


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
