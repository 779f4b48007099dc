"""Provenance check: no tracked file of the repository may share more than LIMIT distinct
8-word sequences with any of CPython 3.11's asyncore/asynchat sources, their tests or its
licence.

    python provenance.py REPO CPYTHON_LIB_DIR

REPO is a git checkout; CPYTHON_LIB_DIR is an installed CPython 3.11's `lib/python3.11`.
Words are lower-cased runs of [A-Za-z0-9_'].  Prints one line per reference file with the
worst repository file, and `provenance: N passed, N failed` last.  Exits 1 on any excess, or
when a reference file is missing (it never passes for want of something to compare)."""
import os
import re
import subprocess
import sys

LIMIT = 40
WIDTH = 8
REFERENCES = ("asyncore.py", "asynchat.py", "test/test_asyncore.py",
              "test/test_asynchat.py", "LICENSE.txt")
WORD = re.compile(r"[A-Za-z0-9_']+")


def shingles(text):
    words = [w.lower() for w in WORD.findall(text)]
    return {tuple(words[i:i + WIDTH]) for i in range(len(words) - WIDTH + 1)}


def read_text(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def main():
    repo, lib = sys.argv[1], sys.argv[2]
    missing = [r for r in REFERENCES if not os.path.isfile(os.path.join(lib, r))]
    if missing:
        print("provenance: CPython 3.11 reference files not found under %s: %s\n"
              "  install CPython 3.11 with pyenv (`pyenv install 3.11.7`) or Debian's "
              "libpython3.11-testsuite, and point the check at its lib/python3.11"
              % (lib, ", ".join(missing)))
        print("provenance: 0 passed, 1 failed")
        return 1
    refs = {r: shingles(read_text(os.path.join(lib, r))) for r in REFERENCES}
    tracked = subprocess.run(["git", "-C", repo, "ls-files", "-z"], check=True,
                             capture_output=True).stdout.decode().split("\0")
    worst = {r: (0, "") for r in REFERENCES}
    bad = []
    for name in filter(None, tracked):
        path = os.path.join(repo, name)
        if not os.path.isfile(path) or os.path.getsize(path) > 8 << 20:
            continue
        mine = shingles(read_text(path))
        if not mine:
            continue
        for r, theirs in refs.items():
            n = len(mine & theirs)
            if n > worst[r][0]:
                worst[r] = (n, name)
            if n > LIMIT:
                bad.append((n, name, r))
    for r in REFERENCES:
        n, name = worst[r]
        print("provenance: %-22s most shared: %4d (%s)" % (r, n, name or "-"))
    for n, name, r in sorted(bad, reverse=True):
        print("provenance: FAIL %s shares %d distinct %d-word sequences with CPython 3.11's %s "
              "(limit %d)" % (name, n, WIDTH, r, LIMIT))
    print("provenance: %d passed, %d failed" % (0 if bad else 1, 1 if bad else 0))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
