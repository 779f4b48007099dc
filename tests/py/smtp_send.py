"""Sends COUNT messages to smtp_sink over CONNS concurrent smtplib connections, then checks
that DIR holds exactly one file per message with the exact message bytes.

usage: smtp_send.py PORT DIR COUNT CONNS
Prints "OK <count>" and exits 0, or prints what is wrong and exits 1.
"""
import os
import random
import smtplib
import sys
import threading

port, outdir, count, conns = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])


def message(n):
    """Message n: headers, then lines that start with dots, 8-bit bytes, long and empty lines.
    Every line ends with CRLF (no bare LF before a dot, which smtplib would stuff but SMTP
    would not unstuff)."""
    rng = random.Random(n)
    lines = [b"From: sender%d@example.com" % n, b"To: rcpt@example.com",
             b"Subject: message %d" % n, b"X-Test-Id: %d" % n, b""]
    for i in range(rng.randrange(1, 60)):
        kind = rng.randrange(6)
        if kind == 0:
            lines.append(b"." * rng.randrange(1, 4) + b"dot line %d" % i)
        elif kind == 1:
            lines.append(b".")
        elif kind == 2:
            lines.append(bytes(rng.choice([b for b in range(256) if b not in (10, 13)])
                               for _ in range(rng.randrange(0, 200))))
        elif kind == 3:
            lines.append(b"")
        elif kind == 4:
            lines.append(b"x" * rng.randrange(900, 3000))
        else:
            lines.append(b"plain line %d \xc3\xa9\xe2\x82\xac" % i)
    if n % 7 == 0:
        lines.append(b"..")
    return b"\r\n".join(lines) + b"\r\n"


errors = []
lock = threading.Lock()


def worker(ids):
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
            s.ehlo("client%d.example" % ids[0])
            assert s.has_extn("size") and s.has_extn("8bitmime") and s.has_extn("pipelining")
            for n in ids:
                opts = ["BODY=8BITMIME"] if n % 2 else []
                refused = s.sendmail("sender%d@example.com" % n, ["rcpt@example.com", "other%d@example.com" % n],
                                     message(n), mail_options=opts)
                assert not refused, refused
    except Exception as e:  # noqa: BLE001 - report everything
        with lock:
            errors.append("connection for %r: %r" % (ids[:3], e))


ids = list(range(count))
threads = [threading.Thread(target=worker, args=(ids[i::conns],)) for i in range(conns)]
for t in threads:
    t.start()
for t in threads:
    t.join()
if errors:
    print("\n".join(errors))
    sys.exit(1)

names = os.listdir(outdir)
if len(names) != count:
    print("expected %d files in %s, found %d: %r" % (count, outdir, len(names), names[:5]))
    sys.exit(1)
seen = set()
for name in names:
    with open(os.path.join(outdir, name), "rb") as f:
        data = f.read()
    # Optional header lines the sink adds, then the exact message.
    headers, sep, rest = data.partition(b"\r\nFrom: ")
    for h in headers.split(b"\r\n"):
        if not h.startswith(b"X-Sink-"):
            print("%s: unexpected line before the message: %r" % (name, h[:80]))
            sys.exit(1)
    body = b"From: " + rest
    n = int(body.split(b"X-Test-Id: ", 1)[1].split(b"\r\n", 1)[0])
    if body != message(n):
        print("%s: message %d differs (%d bytes, expected %d)" % (name, n, len(body), len(message(n))))
        sys.exit(1)
    if b"<sender%d@example.com>" % n not in headers:
        print("%s: envelope sender missing from %r" % (name, headers))
        sys.exit(1)
    seen.add(n)
if seen != set(range(count)):
    print("missing messages: %r" % sorted(set(range(count)) - seen)[:10])
    sys.exit(1)
print("OK %d" % count)
