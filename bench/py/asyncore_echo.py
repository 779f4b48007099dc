"""The seed's asyncore echo server (asyncore.rst, "asyncore Example basic echo server"),
with the harness's conventions: --bind HOST:PORT (port 0 picks a free one), --use-poll,
--quiet, a listen backlog of 1024 (the seed's 5 drops connections under load), TCP_NODELAY
(so 64 KiB echoed in 8 KiB pieces is not held by Nagle), and `listening on HOST:PORT`
printed once ready. Needs a Python that still has asyncore (3.11 or older).
"""
import argparse
import socket
import sys
import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import asyncore


class EchoHandler(asyncore.dispatcher_with_send):

    def handle_read(self):
        data = self.recv(8192)
        if data:
            self.send(data)


class EchoServer(asyncore.dispatcher):

    def __init__(self, host, port, quiet):
        asyncore.dispatcher.__init__(self)
        self.quiet = quiet
        self.create_socket()
        self.set_reuse_addr()
        self.bind((host, port))
        self.listen(1024)

    def handle_accepted(self, sock, addr):
        if not self.quiet:
            print('Incoming connection from %s' % repr(addr))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        EchoHandler(sock)


def main():
    ap = argparse.ArgumentParser(description="the seed's asyncore echo server")
    ap.add_argument("--bind", default="127.0.0.1:8080")
    ap.add_argument("--use-poll", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    host, _, port = args.bind.rpartition(":")
    server = EchoServer(host, int(port), args.quiet)
    h, p = server.socket.getsockname()[:2]
    print("listening on %s:%d" % (h, p), flush=True)
    asyncore.loop(timeout=30.0, use_poll=args.use_poll)


if __name__ == "__main__":
    sys.exit(main())
