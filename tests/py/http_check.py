"""Drives http_server with Python's http.client (keep-alive GETs, HEAD, 404, 405) and a raw
socket (a pipelined burst of requests written at once), checking the exact file bytes.

usage: http_check.py PORT ROOT
Prints "OK" and exits 0, or raises.
"""
import http.client
import os
import socket
import sys

port, root = int(sys.argv[1]), sys.argv[2]
files = sorted(n for n in os.listdir(root)
               if os.path.isfile(os.path.join(root, n)) and not os.path.islink(os.path.join(root, n)))
content = {n: open(os.path.join(root, n), "rb").read() for n in files}
types = {"small.txt": "text/plain", "page.html": "text/html", "big.bin": "application/octet-stream"}

conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
sock = None
for rnd in range(3):
    for name in files:
        conn.request("GET", "/" + name)
        r = conn.getresponse()
        body = r.read()
        assert r.status == 200, (name, r.status)
        assert body == content[name], (name, len(body), len(content[name]))
        assert int(r.getheader("Content-Length")) == len(content[name]), name
        assert r.getheader("Transfer-Encoding") is None
        if name in types:
            assert r.getheader("Content-Type").startswith(types[name]), (name, r.getheader("Content-Type"))
        if sock is None:
            sock = conn.sock
        assert conn.sock is sock, "keep-alive: the connection was not reused"

    conn.request("HEAD", "/big.bin")
    r = conn.getresponse()
    assert r.status == 200 and r.read() == b""
    assert int(r.getheader("Content-Length")) == len(content["big.bin"])

    conn.request("GET", "/missing.txt")
    r = conn.getresponse()
    assert r.status == 404 and r.read()

    conn.request("POST", "/small.txt", body=b"a=1&b=2" * 100, headers={"Content-Type": "text/plain"})
    r = conn.getresponse()
    r.read()
    assert r.status == 405, r.status
    assert "GET" in r.getheader("Allow") and "HEAD" in r.getheader("Allow")
    assert conn.sock is sock, "keep-alive after a request with a body"
conn.close()

# A pipelined burst: every request written at once, the responses read in order.
N = 300
small = [n for n in files if len(content[n]) < 200 * 1024]
names = [small[i % len(small)] for i in range(N)]
names[17] = "nope.bin"
names[50] = names[250] = "big.bin"
req = b"".join(b"GET /%s HTTP/1.1\r\nHost: test\r\nUser-Agent: burst\r\n\r\n" % n.encode() for n in names)
s = socket.create_connection(("127.0.0.1", port), timeout=30)
s.sendall(req)
f = s.makefile("rb")
for i, name in enumerate(names):
    status = f.readline()
    assert status.startswith(b"HTTP/1.1 "), (i, status)
    headers = {}
    while True:
        line = f.readline()
        assert line.endswith(b"\r\n"), (i, line)
        if line == b"\r\n":
            break
        k, v = line.decode("latin-1").split(":", 1)
        headers[k.strip().lower()] = v.strip()
    body = f.read(int(headers["content-length"]))
    if name == "nope.bin":
        assert status.split()[1] == b"404", (i, status)
    else:
        assert status.split()[1] == b"200", (i, status)
        assert body == content[name], (i, name, len(body))
s.close()
print("OK")
