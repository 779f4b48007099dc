"""Runs a script that does `import asyncore` on sockloop's modules, unmodified:

    python run_installed.py SCRIPT [ARGS...]

sockloop.install() registers sockloop.asyncore/asynchat as asyncore/asynchat first."""
import runpy
import sys

import sockloop

sockloop.install()
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
