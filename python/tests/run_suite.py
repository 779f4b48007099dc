"""Runs unittest modules and prints one line `LABEL: N passed, N failed, N skipped`.

    python run_suite.py LABEL MODULE [MODULE...]

Exits 1 if anything failed or errored (or nothing ran)."""
import os
import sys
import unittest


def main():
    sys.path.insert(0, os.getcwd())  # the test modules live in the current directory
    label, names = sys.argv[1], sys.argv[2:]
    suite = unittest.defaultTestLoader.loadTestsFromNames(names)
    result = unittest.TextTestRunner(verbosity=1, stream=sys.stderr).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped
    print("%s: %d passed, %d failed, %d skipped" % (label, passed, failed, skipped), flush=True)
    sys.exit(0 if failed == 0 and result.testsRun > 0 else 1)


if __name__ == "__main__":
    main()
