"""Real TLS clients (Python's ssl module) against sockloop's example servers.

usage:
  tls_clients.py echo PORT CA N SEED      N concurrent echo clients, TLS 1.2 and 1.3, random
                                          sizes from 1 B to 400 KiB, every byte checked; half
                                          end with close_notify, half with a plain close
  tls_clients.py https PORT CA ROOT       http.client.HTTPSConnection keep-alive GETs of every
                                          file in ROOT, bodies exact, one connection, ALPN
  tls_clients.py smtp PORT CA DIR         smtplib STARTTLS, then one message stored exactly
  tls_clients.py corrupt PORT CA          a record corrupted after the handshake: the server
                                          ends the connection (alert or close), then a good
                                          client is served
  tls_clients.py resume PORT CA            a second connection resumes the first's session
                                          (TLS 1.2 session id, TLS 1.3 ticket)
  tls_clients.py churn PORT CA N SEED     N connections ended every way: close_notify, reset,
                                          closed mid-handshake, random bytes for a ClientHello
Prints "OK" and exits 0, or raises.
"""
import http.client
import os
import random
import smtplib
import socket
import ssl
import struct
import sys
import threading

mode, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]


def context(version=None):
    ctx = ssl.create_default_context(cafile=ca)
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


def connect(version=None, timeout=30):
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return context(version).wrap_socket(raw, server_hostname="localhost")


def echo_client(i, seed, errors):
    try:
        rng = random.Random(seed * 1000 + i)
        version = ssl.TLSVersion.TLSv1_3 if i % 2 else ssl.TLSVersion.TLSv1_2
        s = connect(version)
        assert s.version() == ("TLSv1.3" if i % 2 else "TLSv1.2"), s.version()
        for _ in range(3):
            n = int(2 ** rng.uniform(0, 18.6))  # 1 B .. ~400 KiB, log-uniform
            data = rng.randbytes(n)
            # In pieces of at most 64 KiB, each read back before the next is sent: the
            # socket buffers hold a piece both ways, so neither side can block the other.
            got = bytearray()
            for off in range(0, n, 65536):
                piece = data[off:off + 65536]
                s.sendall(piece)
                want = len(got) + len(piece)
                while len(got) < want:
                    chunk = s.recv(65536)
                    if not chunk:
                        raise AssertionError("server closed early")
                    got += chunk
            assert bytes(got) == data, ("mismatch", i, n, len(got))
        if i % 4 < 2:
            s.unwrap().close()  # close_notify, and the server's close_notify back
        else:
            s.close()
    except Exception as e:  # noqa: BLE001 - reported by the main thread
        errors.append((i, repr(e)))


def echo():
    n, seed = int(sys.argv[4]), int(sys.argv[5])
    errors = []
    threads = [threading.Thread(target=echo_client, args=(i, seed, errors)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def https():
    root = sys.argv[4]
    files = sorted(f for f in os.listdir(root) if os.path.isfile(os.path.join(root, f)))
    conn = http.client.HTTPSConnection("localhost", port, context=context(), timeout=30)
    first = None
    for _ in range(3):
        for name in files:
            conn.request("GET", "/" + name)
            r = conn.getresponse()
            body = r.read()
            assert r.status == 200, (name, r.status)
            assert body == open(os.path.join(root, name), "rb").read(), name
            assert int(r.getheader("Content-Length")) == len(body)
            if first is None:
                first = conn.sock
                assert conn.sock.selected_alpn_protocol() in (None, "http/1.1")
            assert conn.sock is first, "keep-alive: the same connection"
    conn.close()


def smtp():
    out = sys.argv[4]
    s = smtplib.SMTP("127.0.0.1", port, timeout=30)
    s.ehlo()
    assert s.has_extn("starttls"), s.esmtp_features
    code, _ = s.starttls(context=context())
    assert code == 220, code
    s.ehlo()
    assert not s.has_extn("starttls"), "not offered again inside TLS"
    body = b"Subject: over TLS\r\n\r\n" + bytes(range(32, 127)) * 100 + b"\r\n..dot\r\nend\r\n"
    s.sendmail("a@example.com", ["b@example.com"], body)
    s.quit()
    # RFC 3207: after STARTTLS the session starts over (EHLO first), and a command the client
    # pipelined in plain text behind STARTTLS is not run inside TLS.
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    f = raw.makefile("rb")
    assert f.readline().startswith(b"220")
    raw.sendall(b"EHLO me\r\n")
    while not f.readline().startswith(b"250 "):
        pass
    raw.sendall(b"STARTTLS\r\nMAIL FROM:<injected@x>\r\n")
    assert f.readline().startswith(b"220"), "STARTTLS answered"
    t = context().wrap_socket(raw, server_hostname="localhost")
    tf = t.makefile("rb")
    t.sendall(b"MAIL FROM:<a@b>\r\n")
    assert tf.readline().startswith(b"503"), "a new EHLO is expected"
    t.sendall(b"EHLO me\r\n")
    lines = [tf.readline()]
    while not lines[-1].startswith(b"250 "):
        lines.append(tf.readline())
    assert not any(b"STARTTLS" in l for l in lines), lines
    t.sendall(b"RCPT TO:<c@d>\r\n")
    assert tf.readline().startswith(b"503"), "the injected MAIL was dropped"
    t.sendall(b"QUIT\r\n")
    assert tf.readline().startswith(b"221")
    t.close()
    files = os.listdir(out)
    assert len(files) == 1, files
    got = open(os.path.join(out, files[0]), "rb").read()
    assert got == body, got[-200:]  # smtplib dot-stuffs, the sink unstuffs


def ended(sock):
    """Reads until the server ends the connection; True if it did within the timeout."""
    sock.settimeout(15)
    try:
        while sock.recv(65536):
            pass
    except (ConnectionResetError, BrokenPipeError):
        pass
    return True


def corrupt():
    raw = socket.create_connection(("127.0.0.1", port), timeout=15)
    inc, outg = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = context(ssl.TLSVersion.TLSv1_3).wrap_bio(inc, outg, server_hostname="localhost")

    def pump_out():
        data = outg.read()
        if data:
            raw.sendall(data)

    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            pump_out()
            chunk = raw.recv(65536)
            assert chunk, "closed during the handshake"
            inc.write(chunk)
    pump_out()
    obj.write(b"ping")
    pump_out()
    got = b""
    while got != b"ping":
        try:
            got += obj.read(4)
        except ssl.SSLWantReadError:
            inc.write(raw.recv(65536))
    obj.write(b"x" * 100)
    record = bytearray(outg.read())
    record[len(record) // 2] ^= 0x5A  # break the AEAD tag check
    raw.sendall(bytes(record))
    assert ended(raw)
    raw.close()
    s = connect()
    s.sendall(b"still served")
    assert s.recv(64) == b"still served"
    s.close()


def resume():
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = context(version)
        session = None
        for attempt in range(2):
            raw = socket.create_connection(("127.0.0.1", port), timeout=15)
            s = ctx.wrap_socket(raw, server_hostname="localhost", session=session)
            s.sendall(b"r")
            assert s.recv(1) == b"r"  # a TLS 1.3 ticket arrives after the handshake
            if attempt == 1:
                assert s.session_reused, (version, "not resumed")
            session = s.session
            s.unwrap().close()


def churn():
    n, seed = int(sys.argv[4]), int(sys.argv[5])
    rng = random.Random(seed)
    for i in range(n):
        kind = i % 4
        if kind == 0:  # close_notify both ways
            s = connect()
            s.sendall(b"a")
            assert s.recv(1) == b"a"
            s.unwrap().close()
        elif kind == 1:  # reset after the handshake
            s = connect()
            s.sendall(b"b")
            assert s.recv(1) == b"b"
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        elif kind == 2:  # closed in the middle of the handshake
            raw = socket.create_connection(("127.0.0.1", port), timeout=15)
            raw.sendall(bytes([0x16, 0x03, 0x01, 0x02, 0x00]) + rng.randbytes(40))
            raw.close()
        else:  # random bytes instead of a ClientHello: the server ends it
            raw = socket.create_connection(("127.0.0.1", port), timeout=15)
            raw.sendall(rng.randbytes(rng.randint(1, 3000)))
            assert ended(raw)
            raw.close()


{"echo": echo, "https": https, "smtp": smtp, "corrupt": corrupt, "resume": resume,
 "churn": churn}[mode]()
print("OK")
