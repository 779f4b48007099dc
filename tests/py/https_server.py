"""An HTTPS file server for http_client's tests: Python's http.server behind ssl.

usage: https_server.py CERT KEY DIR
Prints the port it listens on (127.0.0.1), then serves DIR until killed.
"""
import functools
import http.server
import ssl
import sys

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[3])
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
print(srv.server_address[1], flush=True)
srv.serve_forever()
