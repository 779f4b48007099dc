"""The HTTP benchmark's Python peer: Python's asynchat doing http_server's job on the same page.

HTTP/1.1 GET of a built-in page with keep-alive and pipelining, one async_chat per connection,
terminator b"\\r\\n\\r\\n" for the head. Prints `listening on HOST:PORT`. Needs a Python that
still has asyncore/asynchat (3.11), or sockloop's drop-in after `sockloop.install()`.
"""
import argparse
import sys
import warnings

warnings.simplefilter("ignore", DeprecationWarning)
import asynchat  # noqa: E402
import asyncore  # noqa: E402
import socket  # noqa: E402

PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>sockloop http_server</title></head>\n"
    b"<body><h1>It works</h1><p>Served by sockloop's http_server example (asyncore and asynchat "
    b"in Rust). Start it with <code>--root DIR</code> to serve files.</p></body></html>\n"
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: "
    + str(len(PAGE)).encode()
    + b"\r\n\r\n"
    + PAGE
)
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


class Handler(asynchat.async_chat):
    def __init__(self, sock):
        asynchat.async_chat.__init__(self, sock)
        self.head = []
        self.set_terminator(b"\r\n\r\n")

    def collect_incoming_data(self, data):
        self.head.append(data)

    def found_terminator(self):
        head = b"".join(self.head)
        self.head = []
        line = head.split(b"\r\n", 1)[0].split()
        if len(line) != 3:
            self.push(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            self.close_when_done()
            return
        self.push(RESPONSE if line[1] == b"/" else NOT_FOUND)
        if b"connection: close" in head.lower():
            self.close_when_done()


class Server(asyncore.dispatcher):
    def __init__(self, host, port):
        asyncore.dispatcher.__init__(self)
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.set_reuse_addr()
        self.bind((host, port))
        self.listen(1024)

    def handle_accepted(self, sock, addr):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        Handler(sock)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bind", default="127.0.0.1:8000")
    ap.add_argument("--use-poll", action="store_true")
    args = ap.parse_args()
    host, port = args.bind.rsplit(":", 1)
    server = Server(host, int(port))
    print("listening on %s:%d" % server.socket.getsockname()[:2], flush=True)
    asyncore.loop(timeout=30.0, use_poll=args.use_poll)


if __name__ == "__main__":
    sys.exit(main())
