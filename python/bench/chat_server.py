"""An async_chat line-protocol server: each line (terminator b"\\n") is pushed back.  It
imports plain `asyncore`/`asynchat`, so it runs on CPython 3.11's modules as it is and on
sockloop's after sockloop.install().  `python chat_server.py HOST PORT` prints
`listening on HOST:PORT`."""
import asynchat
import asyncore
import sys


class LineEcho(asynchat.async_chat):
    def __init__(self, sock):
        asynchat.async_chat.__init__(self, sock)
        self.set_terminator(b"\n")
        self.parts = []

    def collect_incoming_data(self, data):
        self.parts.append(data)

    def found_terminator(self):
        line = b"".join(self.parts)
        self.parts = []
        self.push(line + b"\n")


class Server(asyncore.dispatcher):
    def __init__(self, host, port):
        asyncore.dispatcher.__init__(self)
        self.create_socket()
        self.set_reuse_addr()
        self.bind((host, port))
        self.listen(1024)

    def handle_accepted(self, sock, addr):
        LineEcho(sock)


if __name__ == "__main__":
    host, port = sys.argv[1], int(sys.argv[2])
    Server(host, port)
    print("listening on %s:%d" % (host, port), flush=True)
    asyncore.loop(use_poll=True)
