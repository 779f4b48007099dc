# The seed's "basic HTTP client" (docs/asyncore.rst), ported to Python 3 (the request is bytes,
# print is a function) and otherwise unchanged, except that host, port and path come from the
# command line (default: the seed's www.python.org:80 /). It imports plain `asyncore`: on
# Python 3.12+ run it after sockloop.install(), e.g.
# `python python/tests/run_installed.py python/examples/http_client.py 127.0.0.1 8000 /`.
import sys
import asyncore, socket

class HTTPClient(asyncore.dispatcher):
    def __init__(self, host, path, port=80):
        asyncore.dispatcher.__init__(self)
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.connect( (host, port) )
        self.buffer = bytes('GET %s HTTP/1.0\r\n\r\n' % path, 'ascii')
    def handle_connect(self):
        pass
    def handle_close(self):
        self.close()
    def handle_read(self):
        print(self.recv(8192))
    def writable(self):
        return (len(self.buffer) > 0)
    def handle_write(self):
        sent = self.send(self.buffer)
        self.buffer = self.buffer[sent:]

host = sys.argv[1] if len(sys.argv) > 1 else 'www.python.org'
port = int(sys.argv[2]) if len(sys.argv) > 2 else 80
path = sys.argv[3] if len(sys.argv) > 3 else '/'
client = HTTPClient(host, path, port)
asyncore.loop()
