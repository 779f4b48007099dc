# The seed's "basic echo server" (docs/asyncore.rst), ported to Python 3 (print is a function)
# and otherwise unchanged, except that the address comes from the command line (default: the
# seed's localhost:8080). It imports plain `asyncore`: on Python 3.12+ run it after
# sockloop.install(), e.g. `python python/tests/run_installed.py python/examples/echo_server.py`.
import sys
import asyncore
import socket

class EchoHandler(asyncore.dispatcher_with_send):
    def handle_read(self):
        data = self.recv(8192)
        if data:
            self.send(data)

class EchoServer(asyncore.dispatcher):
    def __init__(self, host, port):
        asyncore.dispatcher.__init__(self)
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.set_reuse_addr()
        self.bind((host, port))
        self.listen(5)

    def handle_accept(self):
        pair = self.accept()
        if pair is not None:
            sock, addr = pair
            print('Incoming connection from %s' % repr(addr))
            handler = EchoHandler(sock)

host = sys.argv[1] if len(sys.argv) > 1 else 'localhost'
port = int(sys.argv[2]) if len(sys.argv) > 2 else 8080
server = EchoServer(host, port)
asyncore.loop()
