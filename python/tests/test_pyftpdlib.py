"""A real library built on asyncore/asynchat, unmodified: pyftpdlib (its handlers are
asynchat.async_chat and asyncore.dispatcher subclasses, driven through asyncore.read/write).
Whichever pyftpdlib the interpreter imports (scripts/test-python runs this once with 1.5.7
and once with 2.2.x, the latter through $SOCKLOOP_FTP_PATH prepended to PYTHONPATH):
1.5.7 cannot even be imported on Python 3.12+ without sockloop; 2.2.x imports the
pyasyncore/pyasynchat backports there, which sockloop.install() displaces.  With sockloop it
serves ftplib's login, upload, listing, download, rename and delete on loopback, every byte
checked."""
import ftplib
import io
import os
import random
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
EXTRA = os.environ.get("SOCKLOOP_FTP_PATH")


def child_env():
    env = dict(os.environ)
    if EXTRA:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [EXTRA, env.get("PYTHONPATH")]))
    return env


def pyftpdlib_version():
    r = subprocess.run([sys.executable, "-c", "import pyftpdlib; print(pyftpdlib.__ver__)"],
                       capture_output=True, text=True, timeout=60, env=child_env())
    return tuple(int(x) for x in r.stdout.strip().split(".")[:2])


class PyftpdlibOnSockloop(unittest.TestCase):
    def test_import_without_sockloop_on_312_plus(self):
        if sys.version_info < (3, 12):
            self.skipTest("asyncore is still in the standard library")
        r = subprocess.run([sys.executable, "-c", "import pyftpdlib.servers"],
                           capture_output=True, text=True, timeout=60, env=child_env())
        if pyftpdlib_version() >= (2, 0):
            # 2.x brings the backports, so it imports; the next test checks they are displaced.
            self.assertEqual(r.returncode, 0, r.stderr)
            return
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("No module named 'asyn", r.stderr)

    def test_install_displaces_the_backports(self):
        probe = ("import sys\n"
                 "if sys.argv[1] == 'on':\n"
                 "    import sockloop; sockloop.install()\n"
                 "import pyftpdlib.ioloop as m\n"
                 "print(m.asyncore.__name__, m.asynchat.__name__)\n")
        on = subprocess.run([sys.executable, "-c", probe, "on"], capture_output=True,
                            text=True, timeout=60, env=child_env())
        self.assertEqual(on.returncode, 0, on.stderr)
        self.assertEqual(on.stdout.split(), ["sockloop.asyncore", "sockloop.asynchat"])
        if pyftpdlib_version() < (2, 0) or sys.version_info < (3, 12):
            return
        off = subprocess.run([sys.executable, "-c", probe, "off"], capture_output=True,
                             text=True, timeout=60, env=child_env())
        self.assertEqual(off.returncode, 0, off.stderr)
        self.assertEqual(off.stdout.split(), ["asyncore", "asynchat"])  # the backports

    def test_ftp_session(self):
        with tempfile.TemporaryDirectory() as root:
            proc = subprocess.Popen([sys.executable, os.path.join(HERE, "ftp_server.py"), root],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=child_env())
            try:
                line = proc.stdout.readline()
                self.assertTrue(line.startswith("listening on 127.0.0.1:"),
                                line + proc.stderr.read() if not line else line)
                port = int(line.strip().rsplit(":", 1)[1])
                self._session(port, root)
            finally:
                proc.kill()
                proc.wait(timeout=10)
                proc.stdout.close()
                proc.stderr.close()

    def _session(self, port, root):
        big = random.Random(21).randbytes(3 * 1024 * 1024 + 17)
        with ftplib.FTP() as ftp:
            ftp.connect("127.0.0.1", port, timeout=30)
            self.assertIn("pyftpdlib", ftp.getwelcome())
            with self.assertRaises(ftplib.error_perm):
                ftp.login("user", "wrong")
            ftp.login("user", "12345")
            ftp.mkd("sub")
            ftp.cwd("sub")
            ftp.storbinary("STOR big.bin", io.BytesIO(big))
            self.assertEqual(ftp.size("big.bin"), len(big))
            with open(os.path.join(root, "sub", "big.bin"), "rb") as f:
                self.assertEqual(f.read(), big)
            got = bytearray()
            ftp.retrbinary("RETR big.bin", got.extend)
            self.assertEqual(bytes(got), big)
            ftp.storlines("STOR notes.txt", io.BytesIO(b"one\r\ntwo\r\n"))
            self.assertEqual(sorted(ftp.nlst()), ["big.bin", "notes.txt"])
            listing = []
            ftp.retrlines("LIST", listing.append)
            self.assertEqual(len(listing), 2)
            ftp.rename("notes.txt", "renamed.txt")
            ftp.delete("big.bin")
            self.assertEqual(ftp.nlst(), ["renamed.txt"])
            # Active mode too: the server connects back to us.
            ftp.set_pasv(False)
            lines = []
            ftp.retrlines("RETR renamed.txt", lines.append)
            self.assertEqual(lines, ["one", "two"])
            ftp.quit()


if __name__ == "__main__":
    unittest.main()
