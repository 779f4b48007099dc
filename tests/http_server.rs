//! http_server as a process: Python's http.client (keep-alive GETs, HEAD, 404, 405) and a
//! pipelined burst get the exact file bytes over every backend; malformed requests get 400,
//! big heads 431, long targets 414, chunked bodies 501; no traversal (`..`, `%2e%2e`, `%2f`,
//! a symlink out) reaches outside the root; HTTP/1.0 and `Connection: close` close; curl (when
//! installed) agrees; a head that never ends closes only its connection with memory bounded;
//! header and idle timeouts fire.

mod support;

use sockloop::Backend;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::thread;
use support::http::{read_head, Response};
use support::process::{have, read_to_close, run_py_check, Server};
use support::TempDir;

const SECRET: &[u8] = b"TOP SECRET: outside the root";

/// A root with text, HTML, empty, 70 KiB and 1.5 MiB binary files, a subdirectory with an
/// index, and a symlink to a file outside it.
fn site() -> TempDir {
    let tmp = TempDir::new("http");
    let root = tmp.0.join("root");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::create_dir_all(tmp.0.join("outside")).unwrap();
    std::fs::write(tmp.0.join("outside/secret.txt"), SECRET).unwrap();
    std::os::unix::fs::symlink(tmp.0.join("outside/secret.txt"), root.join("link.txt")).unwrap();
    std::fs::write(root.join("small.txt"), b"hello, world\n").unwrap();
    std::fs::write(root.join("page.html"), b"<!DOCTYPE html><title>t</title><p>\xc3\xa9</p>\n").unwrap();
    std::fs::write(root.join("empty.bin"), b"").unwrap();
    std::fs::write(root.join("sub/index.html"), b"<p>sub index</p>\n").unwrap();
    let mut x: u32 = 12345;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect()
    };
    std::fs::write(root.join("medium.dat"), noise(70 * 1024 + 3)).unwrap();
    std::fs::write(root.join("big.bin"), noise(1536 * 1024 + 7)).unwrap();
    tmp
}

fn root_of(tmp: &TempDir) -> String {
    tmp.0.join("root").to_string_lossy().into_owned()
}

fn http_client_keep_alive_and_pipelining(backend: Backend) {
    let tmp = site();
    let root = root_of(&tmp);
    let server = Server::start("http_server", &["--root", &root, "--backend", backend.name()]);
    run_py_check("http_check.py", &server, &[server.port().to_string(), root]);
    let (status, out) = server.stop();
    assert!(status.success(), "exit status {status}");
    assert!(out.contains("served"), "{out}");
}

/// Reads one response (no body after a HEAD).
fn response(r: &mut BufReader<TcpStream>, head_only: bool) -> Response {
    let mut resp = read_head(r);
    if !head_only {
        let len: usize =
            resp.header("content-length").expect("Content-Length on every response").parse().unwrap();
        resp.read_body(r, len);
    }
    resp
}

/// Sends raw bytes on a new connection and reads one response.
fn ask(server: &Server, raw: &[u8]) -> (Response, BufReader<TcpStream>) {
    let mut s = server.connect();
    s.write_all(raw).unwrap();
    let mut r = BufReader::new(s);
    let resp = response(&mut r, raw.starts_with(b"HEAD"));
    (resp, r)
}

/// Asserts the server closes the connection (nothing more arrives).
fn closes(mut r: BufReader<TcpStream>) {
    let rest = read_to_close(&mut r);
    assert!(rest.is_empty() && r.buffer().is_empty(), "data after a closing response");
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").into_bytes()
}

#[test]
fn malformed_requests_get_400_and_close() {
    let tmp = site();
    let server = Server::start("http_server", &["--root", &root_of(&tmp)]);
    let bad: &[&[u8]] = &[
        b"GARBAGE\r\n\r\n",
        b"GET /small.txt\r\nHost: x\r\n\r\n",
        b"GET /small.txt HTTP/2.0\r\nHost: x\r\n\r\n",
        b"GET /small.txt HTTP/1.2\r\nHost: x\r\n\r\n",
        b"GET /small.txt http/1.1\r\nHost: x\r\n\r\n",
        b"GET  /small.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        b"G(T /small.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /small.txt HTTP/1.1\r\nHost x\r\n\r\n",
        b"GET /small.txt HTTP/1.1\r\nHost : x\r\n\r\n",
        b"GET /small.txt HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
        b"GET /small.txt HTTP/1.1\r\n\r\n",
        b"GET /small.txt HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /small.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 12x\r\n\r\n",
        b"GET /small.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"GET /sm\x01all.txt HTTP/1.1\r\nHost: x\r\n\r\n",
    ];
    for raw in bad {
        let (resp, r) = ask(&server, raw);
        assert_eq!(resp.status, 400, "{:?}", String::from_utf8_lossy(raw));
        assert_eq!(resp.header("connection"), Some("close"));
        closes(r);
    }
    // Other refusals.
    let cases: &[(&[u8], u16)] = &[
        (b"POST /small.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 501),
        (b"BREW /small.txt HTTP/1.1\r\nHost: x\r\n\r\n", 501),
    ];
    for (raw, status) in cases {
        let (resp, _) = ask(&server, raw);
        assert_eq!(resp.status, *status, "{:?}", String::from_utf8_lossy(raw));
    }
    let (resp, r) = ask(&server, b"PUT /small.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
    assert_eq!(resp.status, 405);
    assert_eq!(resp.header("allow"), Some("GET, HEAD"));
    // The body was skipped: the connection goes on.
    let mut r = r;
    r.get_mut().write_all(&get("/small.txt")).unwrap();
    assert_eq!(response(&mut r, false).body, b"hello, world\n");
    // Heads over 8 KiB: 431; a request line too long: 414.
    let big_header = format!("GET /small.txt HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(9000));
    let (resp, r) = ask(&server, big_header.as_bytes());
    assert_eq!(resp.status, 431);
    closes(r);
    let many = format!("GET /small.txt HTTP/1.1\r\nHost: x\r\n{}\r\n", "X-A: 1\r\n".repeat(150));
    assert_eq!(ask(&server, many.as_bytes()).0.status, 431);
    for len in [5000, 20000] {
        let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(len));
        let (resp, r) = ask(&server, long.as_bytes());
        assert_eq!(resp.status, 414, "target of {len} bytes");
        closes(r);
    }
    let (status, _) = server.stop();
    assert!(status.success());
}

#[test]
fn no_path_leaves_the_root() {
    let tmp = site();
    let server = Server::start("http_server", &["--root", &root_of(&tmp)]);
    let attempts = [
        "/../outside/secret.txt",
        "/../../../../../../etc/passwd",
        "/%2e%2e/outside/secret.txt",
        "/%2E%2E/outside/secret.txt",
        "/.%2e/outside/secret.txt",
        "/sub/../../outside/secret.txt",
        "/sub/%2e%2e/%2e%2e/outside/secret.txt",
        "/..%2foutside%2fsecret.txt",
        "/%2e%2e%2foutside%2fsecret.txt",
        "/sub%2f..%2f..%2foutside%2fsecret.txt",
        "/..%5coutside%5csecret.txt",
        "/link.txt",
        "/small.txt%00.html",
        "/%zz",
        "http://test/../outside/secret.txt",
        "*",
    ];
    for path in attempts {
        let (resp, _) = ask(&server, &get(path));
        assert!((400..500).contains(&resp.status), "{path} got {}", resp.status);
        assert!(!resp.body.windows(SECRET.len()).any(|w| w == SECRET), "{path} leaked the secret");
    }
    // What is inside is served, however it is spelled.
    for (path, body) in [
        ("/small.txt", &b"hello, world\n"[..]),
        ("/%73mall.txt", b"hello, world\n"),
        ("/./small.txt?x=../../y", b"hello, world\n"),
        ("//small.txt", b"hello, world\n"),
        ("/sub/", b"<p>sub index</p>\n"),
        ("http://test/small.txt", b"hello, world\n"),
    ] {
        let (resp, _) = ask(&server, &get(path));
        assert_eq!((resp.status, resp.body.as_slice()), (200, body), "{path}");
    }
    // A directory named without its slash is redirected to it (relative links need it).
    let (resp, _) = ask(&server, &get("/sub?x=1"));
    assert_eq!((resp.status, resp.header("location")), (301, Some("/sub/?x=1")));
    assert_eq!(ask(&server, &get("/nothing/here")).0.status, 404);
    let (status, _) = server.stop();
    assert!(status.success());
}

#[test]
fn connection_rules() {
    let tmp = site();
    let server = Server::start("http_server", &["--root", &root_of(&tmp)]);
    // HTTP/1.0 closes unless it asks for keep-alive.
    let (resp, r) = ask(&server, b"GET /small.txt HTTP/1.0\r\n\r\n");
    assert_eq!((resp.status, resp.header("connection")), (200, Some("close")));
    closes(r);
    let (resp, mut r) = ask(&server, b"GET /small.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(resp.header("connection"), Some("keep-alive"));
    r.get_mut().write_all(b"GET /page.html HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
    let resp = response(&mut r, false);
    assert!(resp.header("content-type").unwrap().starts_with("text/html"));
    // Connection: close in HTTP/1.1; requests pipelined after it are not answered.
    let mut s = server.connect();
    s.write_all(b"GET /small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(s);
    assert_eq!(response(&mut r, false).status, 200);
    closes(r);
    // HEAD then GET on one connection: the HEAD response has no body.
    let mut s = server.connect();
    s.write_all(b"HEAD /medium.dat HTTP/1.1\r\nHost: x\r\n\r\nGET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(s);
    let head = response(&mut r, true);
    assert_eq!(head.header("content-length"), Some((70 * 1024 + 3).to_string().as_str()));
    assert_eq!(response(&mut r, false).body, b"hello, world\n");
    // A half-closed client still gets every response it asked for.
    let mut s = server.connect();
    s.write_all(&[get("/small.txt"), get("/big.bin"), get("/small.txt")].concat()).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut r = BufReader::new(s);
    assert_eq!(response(&mut r, false).status, 200);
    assert_eq!(response(&mut r, false).body.len(), 1536 * 1024 + 7);
    assert_eq!(response(&mut r, false).body, b"hello, world\n");
    let (status, _) = server.stop();
    assert!(status.success());
}

#[test]
fn builtin_page_without_a_root() {
    let server = Server::start("http_server", &[]);
    let (resp, _) = ask(&server, &get("/"));
    assert_eq!(resp.status, 200);
    assert!(resp.header("content-type").unwrap().starts_with("text/html"));
    assert!(String::from_utf8_lossy(&resp.body).contains("sockloop"));
    assert_eq!(ask(&server, &get("/etc/passwd")).0.status, 404);
    let (status, _) = server.stop();
    assert!(status.success());
}

#[test]
fn curl_agrees() {
    if !have("curl") {
        eprintln!("curl is not installed: skipping");
        return;
    }
    let tmp = site();
    let root = root_of(&tmp);
    let server = Server::start("http_server", &["--root", &root]);
    let base = format!("http://{}", server.addr);
    let got = tmp.0.join("got.bin");
    let out = Command::new("curl")
        .args(["-sf", "-o"])
        .arg(&got)
        .arg(format!("{base}/big.bin"))
        .arg("-o")
        .arg(tmp.0.join("got.txt"))
        .arg(format!("{base}/small.txt"))
        .status()
        .unwrap();
    assert!(out.success());
    assert_eq!(std::fs::read(&got).unwrap(), std::fs::read(Path::new(&root).join("big.bin")).unwrap());
    assert_eq!(std::fs::read(tmp.0.join("got.txt")).unwrap(), b"hello, world\n");
    let code = |path: &str| -> String {
        let o = Command::new("curl")
            .args(["-s", "--path-as-is", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("{base}{path}"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert_eq!(code("/../outside/secret.txt"), "400");
    assert_eq!(code("/%2e%2e/outside/secret.txt"), "400");
    assert_eq!(code("/link.txt"), "403");
    assert_eq!(code("/missing"), "404");
    let head = Command::new("curl").args(["-sI"]).arg(format!("{base}/medium.dat")).output().unwrap();
    let head = String::from_utf8_lossy(&head.stdout).to_ascii_lowercase();
    assert!(head.contains(&format!("content-length: {}", 70 * 1024 + 3)), "{head}");
    let (status, _) = server.stop();
    assert!(status.success());
}

fn a_head_that_never_ends_closes_only_its_connection(backend: Backend) {
    let tmp = site();
    let server = Server::start("http_server", &["--backend", backend.name(), "--root", &root_of(&tmp)]);
    let s = server.connect();
    let mut w = s.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let _ = w.write_all(b"GET /small.txt HTTP/1.1\r\nHost: x\r\nX-Flood: ");
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..128 {
            // 8 MiB and no blank line; the server closes us part way: errors are expected.
            if w.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    // Meanwhile another client is served.
    let (resp, _) = ask(&server, &get("/medium.dat"));
    assert_eq!((resp.status, resp.body.len()), (200, 70 * 1024 + 3));
    let mut r = s;
    let got = String::from_utf8_lossy(&read_to_close(&mut r)).into_owned();
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 431"), "{got:?}");
    writer.join().unwrap();
    let rss = server.rss_kib();
    assert!(rss < 64 * 1024, "server RSS {rss} KiB after an 8 MiB header");
    let (status, _) = server.stop();
    assert!(status.success());
}

fn header_and_idle_timeouts(backend: Backend) {
    let tmp = site();
    let server = Server::start(
        "http_server",
        &[
            "--backend",
            backend.name(),
            "--root",
            &root_of(&tmp),
            "--header-timeout",
            "1",
            "--idle-timeout",
            "2",
        ],
    );
    // A head begun and never finished: 408 after the header timeout, then closed.
    let mut slow = server.connect();
    slow.write_all(b"GET /small.txt HTTP/1.1\r\nHost: x\r\n").unwrap();
    // An idle keep-alive connection after one request: closed without a word.
    let (resp, idle) = ask(&server, &get("/small.txt"));
    assert_eq!(resp.status, 200);
    let got = String::from_utf8_lossy(&read_to_close(&mut slow)).into_owned();
    assert!(got.starts_with("HTTP/1.1 408"), "{got:?}");
    closes(idle);
    let (status, _) = server.stop();
    assert!(status.success());
}

fn sigterm_flushes_a_response_in_progress(backend: Backend) {
    let tmp = site();
    let root = root_of(&tmp);
    let big: Vec<u8> = (0..24u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(Path::new(&root).join("huge.bin"), &big).unwrap();
    let server =
        Server::start("http_server", &["--backend", backend.name(), "--root", &root, "--grace", "20"]);
    let mut s = server.connect();
    s.write_all(&get("/huge.bin")).unwrap();
    let mut r = BufReader::new(s);
    // The head has arrived: the response is under way (most of it still queued).
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 200"));
    server.terminate();
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    let body_at = rest.windows(4).position(|w| w == b"\r\n\r\n").expect("the end of the head") + 4;
    assert_eq!(rest.len() - body_at, big.len(), "the response was cut short by the shutdown");
    assert!(rest[body_at..] == big[..]);
    let (status, out) = server.stop();
    assert!(status.success());
    assert!(out.contains("served 1 connections"), "{out}");
}

fn slowloris_heads_time_out_while_others_are_served(backend: Backend) {
    let tmp = site();
    let server = Server::start(
        "http_server",
        &["--backend", backend.name(), "--root", &root_of(&tmp), "--header-timeout", "1"],
    );
    // 200 connections, each with a request head begun and never finished.
    let mut slow: Vec<TcpStream> = (0..200)
        .map(|i| {
            let mut s = server.connect();
            s.write_all(format!("GET /small.txt?{i} HTTP/1.1\r\nHost: x\r\nX-Slow: ").as_bytes()).unwrap();
            s
        })
        .collect();
    // Served meanwhile, promptly.
    let t0 = std::time::Instant::now();
    let (resp, _) = ask(&server, &get("/medium.dat"));
    assert_eq!(resp.status, 200);
    assert!(t0.elapsed() < std::time::Duration::from_secs(5), "a normal client waited {:?}", t0.elapsed());
    // Every slow one gets 408 and is closed.
    for s in &mut slow {
        let got = read_to_close(s);
        assert!(got.starts_with(b"HTTP/1.1 408"), "{:?}", String::from_utf8_lossy(&got));
    }
    let (status, _) = server.stop();
    assert!(status.success());
}

fn more_than_1000_pipelined_requests_on_one_connection(backend: Backend) {
    let tmp = site();
    let server = Server::start("http_server", &["--backend", backend.name(), "--root", &root_of(&tmp)]);
    const N: usize = 1500;
    let s = server.connect();
    let mut w = s.try_clone().unwrap();
    // Written at once by a thread while the responses are read here (the server pauses reading
    // while 32 responses are queued, so the writer may block for a while).
    let writer = thread::spawn(move || {
        let mut all = Vec::new();
        for i in 0..N {
            let path = if i % 100 == 99 { "/medium.dat" } else { "/small.txt" };
            all.extend_from_slice(&get(path));
        }
        w.write_all(&all).unwrap();
    });
    let mut r = BufReader::new(s);
    for i in 0..N {
        let resp = response(&mut r, false);
        assert_eq!(resp.status, 200, "response {i}");
        let want = if i % 100 == 99 { 70 * 1024 + 3 } else { 13 };
        assert_eq!(resp.body.len(), want, "response {i}");
    }
    writer.join().unwrap();
    let (status, out) = server.stop();
    assert!(status.success());
    assert!(out.contains(&format!("served 1 connections, {N} requests")), "{out}");
}

backend_tests!(
    http_client_keep_alive_and_pipelining,
    a_head_that_never_ends_closes_only_its_connection,
    header_and_idle_timeouts,
    sigterm_flushes_a_response_in_progress,
    slowloris_heads_time_out_while_others_are_served,
    more_than_1000_pipelined_requests_on_one_connection
);
