//! http_server as a file server, as a process, over every backend: Python's http.client on one
//! keep-alive connection (and the same requests pipelined) checks validators, 304, ranges,
//! HEAD and the directory redirect with exact bytes; curl (when installed) resumes a download
//! and asks conditionally; files renamed over, rewritten in place and deleted are served fresh
//! within a second; symlinks out of the root made before or after the first request are
//! refused; a file truncated while being sent ends only its connection; a 64 MiB file to a slow
//! reader keeps the server's memory flat while other connections are answered at once.

mod support;

use sockloop::Backend;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::http::{read_head, Response};
use support::process::{have, read_to_close, run_py_check, Server};
use support::TempDir;

const SECRET: &[u8] = b"TOP SECRET: outside the root";
/// A little more than the one second within which a change on disk must be served.
const FRESH: Duration = Duration::from_millis(1200);

fn noise(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// A root with one file per common type, 48 KiB, 200 KiB and 1.5 MiB files (one per body
/// path), a subdirectory with an index, and a directory outside it holding a secret.
fn site() -> TempDir {
    let tmp = TempDir::new("files");
    let root = tmp.0.join("root");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::create_dir_all(tmp.0.join("outside")).unwrap();
    std::fs::write(tmp.0.join("outside/secret.txt"), SECRET).unwrap();
    for (name, data) in [
        ("small.txt", &b"hello, world\n"[..]),
        ("page.html", b"<!DOCTYPE html><title>t</title>\n"),
        ("app.js", b"console.log(1);\n"),
        ("style.css", b"p { color: red }\n"),
        ("data.json", b"{\"a\": 1}\n"),
        ("pic.png", b"\x89PNG\r\n\x1a\n...."),
        ("img.jpg", b"\xff\xd8\xff...."),
        ("icon.svg", b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>\n"),
        ("mod.wasm", b"\0asm\x01\0\0\0"),
        ("blob.xyz", b"?"),
        ("sub/index.html", b"<p>sub index</p>\n"),
    ] {
        std::fs::write(root.join(name), data).unwrap();
    }
    // Sent with its head from memory (small.txt ...), straight from memory after its head
    // (mid.dat: 32-64 KiB), and with sendfile (big.bin, video.mp4).
    std::fs::write(root.join("mid.dat"), noise(48 * 1024 + 1, 5)).unwrap();
    std::fs::write(root.join("big.bin"), noise(200 * 1024 + 11, 7)).unwrap();
    std::fs::write(root.join("video.mp4"), noise(1536 * 1024 + 5, 11)).unwrap();
    tmp
}

fn root_of(tmp: &TempDir) -> String {
    tmp.0.join("root").to_string_lossy().into_owned()
}

/// Reads one response head and its Content-Length body.
fn response(r: &mut BufReader<TcpStream>) -> Response {
    let mut resp = read_head(r);
    let len: usize = resp.header("content-length").map_or(0, |l| l.parse().unwrap());
    resp.read_body(r, len);
    resp
}

/// One keep-alive connection.
struct Client(BufReader<TcpStream>);

impl Client {
    fn new(server: &Server) -> Client {
        Client(BufReader::new(server.connect()))
    }

    fn get(&mut self, path: &str, headers: &str) -> Response {
        // One write (write! would send each piece, and Nagle would hold the later ones).
        let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\n");
        self.0.get_mut().write_all(req.as_bytes()).unwrap();
        response(&mut self.0)
    }
}

fn http_client_checks_every_file_behaviour(backend: Backend) {
    let tmp = site();
    let root = root_of(&tmp);
    let server = Server::start("http_server", &["--root", &root, "--backend", backend.name()]);
    run_py_check("http_files_check.py", &server, &[server.port().to_string(), root]);
    let (status, _) = server.stop();
    assert!(status.success(), "exit status {status}");
}

/// The exact bytes of a 206 and a 304 on one connection.
fn exact_bytes_of_a_range_and_a_304(backend: Backend) {
    let tmp = site();
    let server = Server::start("http_server", &["--root", &root_of(&tmp), "--backend", backend.name()]);
    let mut c = Client::new(&server);
    let first = c.get("/small.txt", "");
    let (etag, lm) =
        (first.header("etag").unwrap().to_string(), first.header("last-modified").unwrap().to_string());
    c.0.get_mut().write_all(b"GET /small.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=7-11\r\n\r\n").unwrap();
    let mut head = String::new();
    loop {
        let mut line = String::new();
        c.0.read_line(&mut line).unwrap();
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let date = head.lines().find(|l| l.starts_with("Date: ")).unwrap();
    let want = format!(
        "HTTP/1.1 206 Partial Content\r\nServer: sockloop\r\n{date}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: 5\r\nConnection: keep-alive\r\nLast-Modified: {lm}\r\nETag: {etag}\r\n\
         Accept-Ranges: bytes\r\nContent-Range: bytes 7-11/13\r\n\r\n"
    );
    assert_eq!(head, want);
    let mut body = [0u8; 5];
    c.0.read_exact(&mut body).unwrap();
    assert_eq!(&body, b"world");
    let r = c.get("/small.txt", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!((r.status, r.body.len(), r.header("content-length")), (304, 0, None));
    assert_eq!(c.get("/small.txt", "").body, b"hello, world\n"); // still in step
    drop(c);
    let (status, _) = server.stop();
    assert!(status.success());
}

/// A file renamed over, rewritten in place, deleted and recreated: each served as it is on
/// disk within a second, on one keep-alive connection.
fn files_changed_on_disk_are_served_fresh(backend: Backend) {
    let tmp = site();
    let root = tmp.0.join("root");
    let server = Server::start("http_server", &["--root", &root_of(&tmp), "--backend", backend.name()]);
    let mut c = Client::new(&server);
    assert_eq!(c.get("/small.txt", "").body, b"hello, world\n");
    let etag0 = c.get("/small.txt", "").header("etag").unwrap().to_string();
    // Replaced by rename.
    std::fs::write(root.join(".new"), b"renamed in\n").unwrap();
    std::fs::rename(root.join(".new"), root.join("small.txt")).unwrap();
    std::thread::sleep(FRESH);
    let r = c.get("/small.txt", &format!("If-None-Match: {etag0}\r\n"));
    assert_eq!((r.status, r.body.as_slice()), (200, &b"renamed in\n"[..]));
    let etag1 = r.header("etag").unwrap().to_string();
    assert_ne!(etag0, etag1);
    // Rewritten in place (same inode), longer and then shorter.
    std::fs::OpenOptions::new()
        .write(true)
        .open(root.join("small.txt"))
        .unwrap()
        .write_all(b"rewritten in place!\n")
        .unwrap();
    std::thread::sleep(FRESH);
    let r = c.get("/small.txt", &format!("If-None-Match: {etag1}\r\n"));
    assert_eq!((r.status, r.body.as_slice()), (200, &b"rewritten in place!\n"[..]));
    std::fs::write(root.join("small.txt"), b"short\n").unwrap(); // truncates the same inode
    std::thread::sleep(FRESH);
    assert_eq!(c.get("/small.txt", "").body, b"short\n");
    // Deleted, then recreated.
    std::fs::remove_file(root.join("small.txt")).unwrap();
    std::thread::sleep(FRESH);
    assert_eq!(c.get("/small.txt", "").status, 404);
    std::fs::write(root.join("small.txt"), b"back\n").unwrap();
    assert_eq!(c.get("/small.txt", "").body, b"back\n"); // failures are not cached
                                                         // A big file (sent with sendfile) replaced by rename, and a bigger one rewritten in place.
    let video = c.get("/video.mp4", "");
    assert_eq!(video.body.len(), 1536 * 1024 + 5);
    let new_video = noise(1536 * 1024 + 5, 12);
    std::fs::OpenOptions::new()
        .write(true)
        .open(root.join("video.mp4"))
        .unwrap()
        .write_all(&new_video)
        .unwrap();
    let big = c.get("/big.bin", "");
    assert_eq!(big.body.len(), 200 * 1024 + 11);
    let new_big = noise(300 * 1024, 99);
    std::fs::write(root.join(".big"), &new_big).unwrap();
    std::fs::rename(root.join(".big"), root.join("big.bin")).unwrap();
    std::thread::sleep(FRESH);
    assert!(c.get("/big.bin", "").body == new_big);
    assert!(c.get("/video.mp4", "").body == new_video);
    drop(c);
    let (status, _) = server.stop();
    assert!(status.success());
}

/// Symlinks out of the root are refused whether they exist before the first request or replace
/// a served file or directory after it; a relative symlink that stays inside is served.
fn symlinks_out_of_the_root_before_and_after_the_first_request(backend: Backend) {
    let tmp = site();
    let root = tmp.0.join("root");
    let outside = tmp.0.join("outside");
    std::os::unix::fs::symlink(outside.join("secret.txt"), root.join("before.txt")).unwrap();
    std::os::unix::fs::symlink("../outside/secret.txt", root.join("relative-out.txt")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("dir-before")).unwrap();
    std::os::unix::fs::symlink("small.txt", root.join("inside.txt")).unwrap();
    std::fs::create_dir(root.join("later")).unwrap();
    std::fs::write(root.join("later/secret.txt"), b"harmless\n").unwrap();
    std::fs::write(root.join("victim.txt"), b"victim\n").unwrap();
    let server = Server::start("http_server", &["--root", &root_of(&tmp), "--backend", backend.name()]);
    let mut c = Client::new(&server);
    let refused = |r: &Response, what: &str| {
        assert!((400..500).contains(&r.status), "{what} got {}", r.status);
        assert!(!r.body.windows(SECRET.len()).any(|w| w == SECRET), "{what} leaked the secret");
    };
    for path in ["/before.txt", "/relative-out.txt", "/dir-before/secret.txt", "/dir-before/"] {
        refused(&c.get(path, ""), path);
    }
    assert_eq!(c.get("/inside.txt", "").body, b"hello, world\n");
    assert_eq!(c.get("/victim.txt", "").body, b"victim\n");
    assert_eq!(c.get("/later/secret.txt", "").body, b"harmless\n");
    // After the first request: the file and the directory become symlinks out.
    std::os::unix::fs::symlink(outside.join("secret.txt"), root.join(".tmp-link")).unwrap();
    std::fs::rename(root.join(".tmp-link"), root.join("victim.txt")).unwrap();
    std::fs::remove_dir_all(root.join("later")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("later")).unwrap();
    std::os::unix::fs::symlink("../outside", root.join("made-after")).unwrap();
    std::thread::sleep(FRESH);
    for path in ["/victim.txt", "/later/secret.txt", "/made-after/secret.txt"] {
        refused(&c.get(path, ""), path);
    }
    drop(c);
    let (status, _) = server.stop();
    assert!(status.success());
}

/// A file truncated while it is being sent: that connection ends short (its Content-Length can
/// no longer be kept) and soon, the server goes on serving others.
fn a_file_truncated_mid_response_ends_only_its_connection(backend: Backend) {
    let tmp = site();
    let root = tmp.0.join("root");
    let size = 32 << 20;
    std::fs::write(root.join("huge.bin"), noise(size, 3)).unwrap();
    let server = Server::start("http_server", &["--root", &root_of(&tmp), "--backend", backend.name()]);
    let mut s = server.connect();
    s.write_all(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut first = vec![0u8; 64 * 1024];
    s.read_exact(&mut first).unwrap(); // the transfer has begun; the socket buffers are filling
    std::fs::OpenOptions::new().write(true).open(root.join("huge.bin")).unwrap().set_len(1 << 20).unwrap();
    let started = Instant::now();
    let rest = read_to_close(&mut s);
    assert!(first.len() + rest.len() < size, "the whole file arrived after it was truncated");
    assert!(started.elapsed() < Duration::from_secs(10), "the connection hung");
    let mut c = Client::new(&server);
    assert_eq!(c.get("/small.txt", "").body, b"hello, world\n");
    drop(c);
    // The report reaches the test through a reader thread on the server's stderr: wait for it.
    support::wait_until(Duration::from_secs(10), "the server's report of the truncated file", || {
        server.stderr().contains("the file ended at")
    });
    let (status, _) = server.stop();
    assert!(status.success());
}

/// 64 MiB to a reader that takes it slowly: small requests on other connections are answered
/// promptly throughout, and the server's resident memory stays far below the file's size.
fn a_64_mib_file_to_a_slow_reader(backend: Backend) {
    let tmp = site();
    let root = tmp.0.join("root");
    let size = 64 << 20;
    let data = noise(size, 5);
    std::fs::write(root.join("huge.bin"), &data).unwrap();
    let server = Server::start("http_server", &["--root", &root_of(&tmp), "--backend", backend.name()]);
    let rss_before = server.rss_kib();
    let mut slow = BufReader::with_capacity(16 * 1024, server.connect());
    slow.get_mut().write_all(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut line = String::new();
    slow.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    while line != "\r\n" {
        line.clear();
        slow.read_line(&mut line).unwrap();
    }
    let mut got = Vec::with_capacity(size);
    let mut buf = vec![0u8; 16 * 1024];
    let mut worst = Duration::ZERO;
    let mut times = Vec::new();
    let mut max_rss = 0;
    let mut c = Client::new(&server);
    let slow_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < slow_until {
        let n = slow.read(&mut buf).unwrap();
        got.extend_from_slice(&buf[..n]);
        std::thread::sleep(Duration::from_millis(5));
        let t = Instant::now();
        assert_eq!(c.get("/small.txt", "").body, b"hello, world\n");
        worst = worst.max(t.elapsed());
        times.push(t.elapsed());
        max_rss = max_rss.max(server.rss_kib());
    }
    assert!(got.len() < size / 2, "the reader was not slow");
    // The rest, at full speed (the connection stays open: read exactly what is owed).
    let mut rest = vec![0u8; size - got.len()];
    slow.read_exact(&mut rest).unwrap();
    got.extend_from_slice(&rest);
    assert!(got == data, "the 64 MiB body differs");
    times.sort();
    eprintln!(
        "64 MiB to a slow reader: {} small requests, median {:?}, 99th {:?}, worst {worst:?}; RSS {rss_before} -> {max_rss} KiB",
        times.len(),
        times[times.len() / 2],
        times[times.len() * 99 / 100]
    );
    assert!(worst < Duration::from_millis(100), "a small request took {worst:?} beside the slow reader");
    assert!(
        max_rss < rss_before + 16 * 1024,
        "resident memory grew from {rss_before} KiB to {max_rss} KiB while sending 64 MiB"
    );
    drop(c);
    let (status, _) = server.stop();
    assert!(status.success());
}

#[test]
fn curl_resumes_and_revalidates() {
    if !have("curl") {
        eprintln!("curl is not installed: skipping");
        return;
    }
    let tmp = site();
    let root = root_of(&tmp);
    let server = Server::start("http_server", &["--root", &root]);
    let base = format!("http://{}", server.addr);
    let big = std::fs::read(Path::new(&root).join("big.bin")).unwrap();
    // A partial download resumed with -C -.
    let part = tmp.0.join("part.bin");
    std::fs::write(&part, &big[..12345]).unwrap();
    let ok = Command::new("curl")
        .args(["-sf", "-C", "-", "-o"])
        .arg(&part)
        .arg(format!("{base}/big.bin"))
        .status()
        .unwrap();
    assert!(ok.success());
    assert!(std::fs::read(&part).unwrap() == big, "the resumed download differs");
    // -r asks a range, -z a conditional GET against a local file's time.
    let out =
        Command::new("curl").args(["-s", "-r", "0-4"]).arg(format!("{base}/small.txt")).output().unwrap();
    assert_eq!(out.stdout, b"hello");
    let code = |args: &[&str]| -> String {
        let o = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(args)
            .arg(format!("{base}/small.txt"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let later = tmp.0.join("later");
    std::fs::write(&later, b"").unwrap();
    let future = std::time::SystemTime::now() + Duration::from_secs(3600);
    std::fs::File::options().write(true).open(&later).unwrap().set_modified(future).unwrap();
    assert_eq!(code(&["-z", later.to_str().unwrap()]), "304");
    assert_eq!(code(&["-z", "1 Jan 2000"]), "200");
    assert_eq!(code(&["-r", "100-"]), "416");
    let o = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}"])
        .arg(format!("{base}/sub"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), format!("301 {base}/sub/"));
    let (status, _) = server.stop();
    assert!(status.success());
}

backend_tests!(
    http_client_checks_every_file_behaviour,
    exact_bytes_of_a_range_and_a_304,
    files_changed_on_disk_are_served_fresh,
    symlinks_out_of_the_root_before_and_after_the_first_request,
    a_file_truncated_mid_response_ends_only_its_connection,
    a_64_mib_file_to_a_slow_reader,
);
