"""sockloop: asyncore and asynchat for Python 3.11+, run by sockloop's Rust loop.

    import sockloop
    sockloop.install()          # `import asyncore` / `import asynchat` now give sockloop's
    import asyncore             # Python 3.11 API; the loop waits with epoll on Linux

`sockloop.asyncore` and `sockloop.asynchat` can also be imported directly.
"""

import sys

from . import _core, asyncore, asynchat

__all__ = ["asyncore", "asynchat", "install", "backends"]
__version__ = "0.1.0"


def install():
    """Registers sockloop's modules as `asyncore` and `asynchat` in `sys.modules`, so that
    unmodified programs and libraries that `import asyncore` use them.  Returns the two
    modules.  Call it before those imports run."""
    sys.modules["asyncore"] = asyncore
    sys.modules["asynchat"] = asynchat
    return asyncore, asynchat


def backends():
    """The backends `asyncore.loop(backend=...)` accepts on this platform ('auto' resolves
    to `_core.default_backend()`)."""
    names = ["auto", "select", "poll"]
    if _core.default_backend() == "epoll":
        names.append("epoll")
    return names
