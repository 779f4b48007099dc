"""Drives http_server's file behaviours with Python's http.client on one keep-alive
connection, then the same requests pipelined in one write on a raw socket, checking exact
bytes: validators (ETag, Last-Modified), Content-Type by extension, Accept-Ranges, 304 from
If-None-Match (which wins) and If-Modified-Since, 206/416 ranges, If-Range, several ranges
(whole file), malformed ranges (ignored), HEAD (the GET's headers without a body), and 301 for
a directory without its slash.

usage: http_files_check.py PORT ROOT
Prints "OK" and exits 0, or raises.
"""
import email.utils
import http.client
import os
import socket
import sys

port, root = int(sys.argv[1]), sys.argv[2]
TYPES = {
    "small.txt": "text/plain; charset=utf-8",
    "page.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "data.json": "application/json",
    "pic.png": "image/png",
    "img.jpg": "image/jpeg",
    "icon.svg": "image/svg+xml",
    "mod.wasm": "application/wasm",
    "blob.xyz": "application/octet-stream",
    "mid.dat": "application/octet-stream",
    "big.bin": "application/octet-stream",
    "video.mp4": "video/mp4",
}
content = {n: open(os.path.join(root, n), "rb").read() for n in TYPES}
lastmod = {n: email.utils.formatdate(int(os.stat(os.path.join(root, n)).st_mtime), usegmt=True) for n in TYPES}

conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
sock = None


def ask(method, path, headers=None):
    global sock
    conn.request(method, path, headers=headers or {})
    r = conn.getresponse()
    body = r.read()
    if sock is None:
        sock = conn.sock
    assert conn.sock is sock, "keep-alive: the connection was not reused"
    return r, body


etags = {}
for name, ctype in TYPES.items():
    r, body = ask("GET", "/" + name)
    assert r.status == 200 and body == content[name], (name, r.status, len(body))
    assert r.getheader("Content-Type") == ctype, (name, r.getheader("Content-Type"))
    assert r.getheader("Content-Length") == str(len(content[name]))
    assert r.getheader("Accept-Ranges") == "bytes"
    assert r.getheader("Last-Modified") == lastmod[name], (r.getheader("Last-Modified"), lastmod[name])
    etag = r.getheader("ETag")
    assert etag and etag.startswith('"') and etag.endswith('"'), etag
    etags[name] = etag
    get_headers = sorted((k, v) for k, v in r.getheaders() if k != "Date")
    h, hbody = ask("HEAD", "/" + name)
    assert h.status == 200 and hbody == b""
    assert sorted((k, v) for k, v in h.getheaders() if k != "Date") == get_headers, name

name, data, etag = "small.txt", content["small.txt"], etags["small.txt"]
N = len(data)
old = email.utils.formatdate(int(os.stat(os.path.join(root, name)).st_mtime) - 86400, usegmt=True)
future = email.utils.formatdate(int(os.stat(os.path.join(root, name)).st_mtime) + 86400, usegmt=True)

# Conditional requests.
for method in ("GET", "HEAD"):
    for hdrs in ({"If-None-Match": etag}, {"If-None-Match": '"nope", ' + etag}, {"If-None-Match": "W/" + etag},
                 {"If-None-Match": "*"}, {"If-Modified-Since": lastmod[name]}, {"If-Modified-Since": future}):
        r, body = ask(method, "/" + name, hdrs)
        assert r.status == 304 and body == b"", (method, hdrs, r.status)
        assert r.getheader("ETag") == etag and r.getheader("Last-Modified") == lastmod[name]
        assert r.getheader("Content-Length") is None
    for hdrs in ({"If-None-Match": '"nope"', "If-Modified-Since": future},  # If-None-Match wins
                 {"If-Modified-Since": old}, {"If-Modified-Since": "not a date"}):
        r, body = ask(method, "/" + name, hdrs)
        assert r.status == 200, (method, hdrs, r.status)
        assert body == (data if method == "GET" else b"")

# Ranges, on a small file (read with the head) and a big one (sendfile from an offset).
for name in ("small.txt", "mid.dat", "big.bin", "video.mp4"):
    data, etag, N = content[name], etags[name], len(content[name])
    cases = [
        ("bytes=0-9", 0, 9), ("bytes=3-", 3, N - 1), ("bytes=-7", N - 7, N - 1),
        ("bytes=5-99999999", 5, N - 1), ("bytes=-99999999", 0, N - 1), ("bytes=%d-%d" % (N - 1, N - 1), N - 1, N - 1),
    ]
    if N > 200000:
        cases.append(("bytes=100000-199999", 100000, 199999))
    for spec, first, last in cases:
        for method in ("GET", "HEAD"):
            r, body = ask(method, "/" + name, {"Range": spec})
            assert r.status == 206, (name, spec, r.status)
            assert r.getheader("Content-Range") == "bytes %d-%d/%d" % (first, last, N), r.getheader("Content-Range")
            assert r.getheader("Content-Length") == str(last - first + 1)
            assert body == (data[first:last + 1] if method == "GET" else b""), (name, spec)
    for spec in ("bytes=%d-" % N, "bytes=%d-%d" % (N + 5, N + 10), "bytes=-0"):
        r, body = ask("GET", "/" + name, {"Range": spec})
        assert r.status == 416, (spec, r.status)
        assert r.getheader("Content-Range") == "bytes */%d" % N
        assert body == b"416 Range Not Satisfiable\n"
    for spec in ("bytes=9-3", "bytes=x-y", "pages=0-1", "bytes=0-1,5-6", "bytes=-"):
        r, body = ask("GET", "/" + name, {"Range": spec})
        assert r.status == 200 and body == data and r.getheader("Content-Range") is None, (spec, r.status)
    r, body = ask("GET", "/" + name, {"Range": "bytes=0-3", "If-Range": etag})
    assert r.status == 206 and body == data[:4]
    r, body = ask("GET", "/" + name, {"Range": "bytes=0-3", "If-Range": lastmod[name]})
    assert r.status == 206 and body == data[:4]
    for stale in ('"stale"', "W/" + etag, old):
        r, body = ask("GET", "/" + name, {"Range": "bytes=0-3", "If-Range": stale})
        assert r.status == 200 and body == data, (stale, r.status)

# A directory without its slash.
for method in ("GET", "HEAD"):
    r, body = ask(method, "/sub?a=b")
    assert r.status == 301 and r.getheader("Location") == "/sub/?a=b", (r.status, r.getheader("Location"))
r, body = ask("GET", "/sub/")
assert r.status == 200 and body == open(os.path.join(root, "sub", "index.html"), "rb").read()
assert r.getheader("Content-Type") == "text/html; charset=utf-8"
r, body = ask("GET", "/small.txt/")  # a file named as a directory
assert r.status == 404, r.status
conn.close()

# The same, pipelined in one write: every response in order, exact bytes.
big = content["big.bin"]
reqs = [
    ("GET", "/small.txt", {}, 200, content["small.txt"]),
    ("GET", "/small.txt", {"If-None-Match": etags["small.txt"]}, 304, b""),
    ("HEAD", "/big.bin", {}, 200, b""),
    ("GET", "/big.bin", {"Range": "bytes=100-"}, 206, big[100:]),
    ("GET", "/small.txt", {"If-Modified-Since": lastmod["small.txt"]}, 304, b""),
    ("GET", "/big.bin", {"Range": "bytes=-5"}, 206, big[-5:]),
    ("GET", "/big.bin", {"Range": "bytes=%d-" % len(big)}, 416, b"416 Range Not Satisfiable\n"),
    ("GET", "/sub", {}, 301, b"301 Moved Permanently\n"),
    ("HEAD", "/small.txt", {"Range": "bytes=0-1"}, 206, b""),
    ("GET", "/big.bin", {}, 200, big),
    ("GET", "/page.html", {}, 200, content["page.html"]),
    ("GET", "/video.mp4", {"Range": "bytes=1000-"}, 206, content["video.mp4"][1000:]),
    ("GET", "/video.mp4", {}, 200, content["video.mp4"]),
    ("GET", "/mid.dat", {"Range": "bytes=100-"}, 206, content["mid.dat"][100:]),
    ("GET", "/mid.dat", {}, 200, content["mid.dat"]),
] * 3
raw = b"".join(
    ("%s %s HTTP/1.1\r\nHost: t\r\n%s\r\n" % (m, p, "".join("%s: %s\r\n" % kv for kv in h.items()))).encode()
    for m, p, h, _, _ in reqs
)
s = socket.create_connection(("127.0.0.1", port), timeout=30)
s.sendall(raw)
f = s.makefile("rb")
for i, (method, path, hdrs, status, want) in enumerate(reqs):
    line = f.readline()
    assert line.startswith(b"HTTP/1.1 %d " % status), (i, path, hdrs, line)
    headers = {}
    while True:
        h = f.readline()
        assert h.endswith(b"\r\n"), (i, h)
        if h == b"\r\n":
            break
        k, v = h.decode("latin-1").split(":", 1)
        headers[k.strip().lower()] = v.strip()
    if method == "HEAD" or status == 304:
        body = b""
    else:
        body = f.read(int(headers["content-length"]))
    assert body == want, (i, path, len(body), len(want))
s.close()
print("OK")
