"""A real library built on asyncore/asynchat, unmodified: pyftpdlib 1.5.7 (its handlers are
asynchat.async_chat and asyncore.dispatcher subclasses, driven through asyncore.read/write).
It cannot even be imported on Python 3.12+ without sockloop; with sockloop.install() it serves
ftplib's login, upload, listing, download, rename and delete on loopback, every byte checked."""
import ftplib
import io
import os
import random
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


class PyftpdlibOnSockloop(unittest.TestCase):
    def test_broken_without_sockloop_on_312_plus(self):
        if sys.version_info < (3, 12):
            self.skipTest("asyncore is still in the standard library")
        r = subprocess.run([sys.executable, "-c", "import pyftpdlib.servers"],
                           capture_output=True, text=True, timeout=60)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("No module named 'asyn", r.stderr)

    def test_ftp_session(self):
        with tempfile.TemporaryDirectory() as root:
            proc = subprocess.Popen([sys.executable, os.path.join(HERE, "ftp_server.py"), root],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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
