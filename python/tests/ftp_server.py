"""pyftpdlib (1.5.x: `import asyncore`, `import asynchat`) serving ROOT on loopback, unmodified,
on sockloop's modules: `python ftp_server.py ROOT` prints `listening on 127.0.0.1:PORT`."""
import sys

import sockloop

sockloop.install()

from pyftpdlib.authorizers import DummyAuthorizer  # noqa: E402
from pyftpdlib.handlers import FTPHandler  # noqa: E402
from pyftpdlib.servers import FTPServer  # noqa: E402

authorizer = DummyAuthorizer()
authorizer.add_user("user", "12345", sys.argv[1], perm="elradfmwMT")
handler = FTPHandler
handler.authorizer = authorizer
server = FTPServer(("127.0.0.1", 0), handler)
print("listening on 127.0.0.1:%d" % server.address[1], flush=True)
server.serve_forever()
