"""Runs CPython 3.11's own test_asyncore.py and test_asynchat.py, unmodified, on sockloop.

    python run_cpython311.py LABEL [NAME...]     (NAMEs default to both suites)

The files are read from an installed CPython 3.11 (never from this repository):
$SOCKLOOP_CPYTHON311_TESTS if set, else pyenv's versions/3.11.*/lib/python3.11/test, else
Debian's /usr/lib/python3.11/test (package libpython3.11-testsuite).  sockloop.install()
runs first, so the suites' `import_deprecated('asyncore')` gets sockloop's module; each file
is loaded by path under its own module name, with the running interpreter's own
`test.support` (3.11's library stays off sys.path); the working directory is a scratch
directory (the suites create files there).  Prints `LABEL: N passed, N failed, N skipped`
and exits 1 if anything failed, nothing ran, or no 3.11 test file was found."""
import glob
import importlib.util
import os
import subprocess
import sys
import tempfile
import unittest

import sockloop

SUITES = ("test_asyncore", "test_asynchat")


def candidates():
    given = os.environ.get("SOCKLOOP_CPYTHON311_TESTS")
    if given:
        yield given
        return
    roots = []
    try:
        roots.append(subprocess.run(["pyenv", "root"], capture_output=True, text=True,
                                    timeout=30).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    roots.append(os.path.expanduser("~/.pyenv"))
    for root in filter(None, roots):
        yield from sorted(glob.glob(os.path.join(root, "versions", "3.11.*", "lib",
                                                 "python3.11", "test")), reverse=True)
    yield "/usr/lib/python3.11/test"


def find_suite_dir(names):
    for d in candidates():
        if all(os.path.isfile(os.path.join(d, n + ".py")) for n in names):
            return d
    return None


def main():
    label = sys.argv[1]
    names = sys.argv[2:] or list(SUITES)
    where = find_suite_dir(names)
    if where is None:
        print("CPython 3.11's %s not found: install CPython 3.11 with pyenv "
              "(`pyenv install 3.11.7`) or Debian's libpython3.11-testsuite, or set "
              "SOCKLOOP_CPYTHON311_TESTS to a directory holding them"
              % " and ".join(n + ".py" for n in names), file=sys.stderr)
        print("%s: 0 passed, 1 failed, 0 skipped" % label, flush=True)
        sys.exit(1)
    sockloop.install()
    scratch = tempfile.mkdtemp(prefix="sockloop-cpython311-")
    os.chdir(scratch)
    suite = unittest.TestSuite()
    for name in names:
        spec = importlib.util.spec_from_file_location(name, os.path.join(where, name + ".py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        suite.addTests(unittest.defaultTestLoader.loadTestsFromModule(module))
    print("running %s from %s in %s" % (", ".join(names), where, scratch), file=sys.stderr)
    result = unittest.TextTestRunner(verbosity=1, stream=sys.stderr).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped
    print("%s: %d passed, %d failed, %d skipped" % (label, passed, failed, skipped), flush=True)
    left = os.listdir(scratch)
    if not left:
        os.rmdir(scratch)
    sys.exit(0 if failed == 0 and result.testsRun > 0 else 1)


if __name__ == "__main__":
    main()
