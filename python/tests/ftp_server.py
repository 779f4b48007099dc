"""pyftpdlib (1.5.x imports `asyncore`/`asynchat` from the standard library, 2.2.x on Python
3.12+ from the pyasyncore/pyasynchat backports) serving ROOT on loopback, unmodified, on
sockloop's modules: `python ftp_server.py ROOT` prints `listening on 127.0.0.1:PORT`.  It
exits with status 3 if pyftpdlib got any other asyncore or asynchat than sockloop's."""
import sys

import sockloop

sockloop.install()

import pyftpdlib.ioloop  # noqa: E402
from pyftpdlib.authorizers import DummyAuthorizer  # noqa: E402
from pyftpdlib.handlers import FTPHandler  # noqa: E402
from pyftpdlib.servers import FTPServer  # noqa: E402

if (pyftpdlib.ioloop.asyncore is not sockloop.asyncore
        or pyftpdlib.ioloop.asynchat is not sockloop.asynchat):
    print("pyftpdlib is not on sockloop's modules: %r, %r"
          % (pyftpdlib.ioloop.asyncore, pyftpdlib.ioloop.asynchat), file=sys.stderr)
    sys.exit(3)

authorizer = DummyAuthorizer()
authorizer.add_user("user", "12345", sys.argv[1], perm="elradfmwMT")
handler = FTPHandler
handler.authorizer = authorizer
server = FTPServer(("127.0.0.1", 0), handler)
print("listening on 127.0.0.1:%d" % server.address[1], flush=True)
server.serve_forever()
