//! smtp_sink as a process: Python's smtplib sends 200 messages over 20 connections and every
//! file holds the exact message; the protocol errors (500/501/503/552/555, the 4 KiB line)
//! over a raw socket; hostile input (a line that never ends, in both phases) closes only its
//! connection with memory bounded; the idle timeout answers 421.

mod support;

use sockloop::Backend;
use std::io::Write;
use std::process::Command;
use std::thread;
use support::process::{py_script, python, read_to_close, Lines, Server};
use support::TempDir;

fn mail_dir(tmp: &TempDir) -> String {
    tmp.0.join("mail").to_string_lossy().into_owned()
}

/// The files in `dir`.
fn files(dir: &str) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

fn smtplib_sends(backend: &str, count: usize, conns: usize) {
    let tmp = TempDir::new("smtp");
    let dir = mail_dir(&tmp);
    let server = Server::start("smtp_sink", &["--dir", &dir, "--backend", backend]);
    let out = Command::new(python())
        .arg(py_script("smtp_send.py"))
        .args([server.port().to_string(), dir.clone(), count.to_string(), conns.to_string()])
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(&format!("OK {count}")),
        "smtplib run failed: {stdout}{}\nserver stderr: {}",
        String::from_utf8_lossy(&out.stderr),
        server.stderr()
    );
    // Nothing but the messages in DIR.
    let names = files(&dir);
    assert_eq!(names.len(), count);
    assert!(names.iter().all(|p| p.is_file() && !p.file_name().unwrap().to_string_lossy().starts_with('.')));
    let (status, out) = server.stop();
    assert!(status.success(), "exit status {status}");
    assert!(out.contains(&format!("accepted {count} messages")), "{out}");
}

#[test]
fn smtplib_200_messages_over_20_connections() {
    smtplib_sends("epoll", 200, 20);
}

fn smtplib_20_messages_over_4_connections(backend: Backend) {
    smtplib_sends(backend.name(), 20, 4);
}

/// Sends `cmd` and returns the reply's last line (the one with a space after the code).
fn cmd(c: &mut Lines, cmd: &str) -> String {
    c.send(format!("{cmd}\r\n").as_bytes());
    reply(c)
}

fn reply(c: &mut Lines) -> String {
    loop {
        let line = c.line();
        if line.as_bytes().get(3) != Some(&b'-') {
            return line;
        }
    }
}

fn code(line: &str) -> &str {
    &line[..3]
}

#[test]
fn protocol_errors_and_order() {
    let tmp = TempDir::new("smtp");
    let dir = mail_dir(&tmp);
    let server = Server::start("smtp_sink", &["--dir", &dir, "--max-size", "1000"]);
    let mut c = Lines::new(server.connect());
    assert_eq!(code(&reply(&mut c)), "220");
    assert_eq!(code(&cmd(&mut c, "MAIL FROM:<a@b>")), "503", "MAIL before HELO/EHLO");
    assert_eq!(code(&cmd(&mut c, "FOO bar")), "500");
    assert_eq!(code(&cmd(&mut c, "")), "500");
    assert_eq!(code(&cmd(&mut c, "HELO")), "501");
    // EHLO advertises the limit and the extensions.
    c.send(b"EHLO client.example\r\n");
    let mut ehlo = Vec::new();
    loop {
        let line = c.line();
        ehlo.push(line.clone());
        if line.as_bytes()[3] == b' ' {
            break;
        }
    }
    assert!(ehlo.iter().all(|l| l.starts_with("250")), "{ehlo:?}");
    for ext in ["SIZE 1000", "8BITMIME", "PIPELINING"] {
        assert!(ehlo.iter().any(|l| &l[4..] == ext), "EHLO lacks {ext}: {ehlo:?}");
    }
    assert_eq!(code(&cmd(&mut c, "RCPT TO:<c@d>")), "503", "RCPT before MAIL");
    assert_eq!(code(&cmd(&mut c, "DATA")), "503", "DATA before MAIL");
    assert_eq!(code(&cmd(&mut c, "MAIL FROM:a@b")), "501", "no angle brackets");
    assert_eq!(code(&cmd(&mut c, "MAIL FROM:<a@b> SIZE=abc")), "501");
    assert_eq!(code(&cmd(&mut c, "MAIL FROM:<a@b> BODY=9BIT")), "501");
    assert_eq!(code(&cmd(&mut c, "MAIL FROM:<a@b> FROB=1")), "555");
    assert_eq!(code(&cmd(&mut c, "MAIL FROM:<a@b> SIZE=1001")), "552", "declared size over the limit");
    assert_eq!(code(&cmd(&mut c, "mail from:<a@b> size=10 body=8bitmime")), "250", "parameters in any case");
    assert_eq!(code(&cmd(&mut c, "MAIL FROM:<a@b>")), "503", "nested MAIL");
    assert_eq!(code(&cmd(&mut c, "DATA")), "503", "DATA before RCPT");
    assert_eq!(code(&cmd(&mut c, "RCPT TO:<>")), "501");
    assert_eq!(code(&cmd(&mut c, "RCPT TO:<c@d>")), "250");
    assert_eq!(code(&cmd(&mut c, "DATA extra")), "501");
    assert_eq!(code(&cmd(&mut c, "DATA")), "354");
    // An oversized message: 552 after its end, and the session goes on.
    let mut big = Vec::new();
    for i in 0..40 {
        big.extend_from_slice(format!("line {i} {}\r\n", "y".repeat(40)).as_bytes());
    }
    big.extend_from_slice(b".\r\n");
    c.send(&big);
    assert_eq!(code(&reply(&mut c)), "552");
    assert_eq!(code(&cmd(&mut c, "VRFY someone")), "252");
    assert_eq!(code(&cmd(&mut c, "VRFY")), "501");
    assert_eq!(code(&cmd(&mut c, "NOOP")), "250");
    assert_eq!(code(&cmd(&mut c, "RSET")), "250");
    assert_eq!(code(&cmd(&mut c, "RSET now")), "501");
    assert!(files(&dir).is_empty(), "an oversized message was written");
    assert!(files(&tmp.0.join(".mail.smtp_sink.tmp").to_string_lossy()).is_empty());
    // Pipelined: MAIL, RCPT, DATA in one write, then an empty message (".": the first line).
    c.send(b"MAIL FROM:<p@q>\r\nRCPT TO:<r@s>\r\nDATA\r\n");
    assert_eq!(code(&reply(&mut c)), "250");
    assert_eq!(code(&reply(&mut c)), "250");
    assert_eq!(code(&reply(&mut c)), "354");
    c.send(b".\r\n");
    assert_eq!(code(&reply(&mut c)), "250");
    // A message whose lines start with dots.
    c.send(b"MAIL FROM:<p@q>\r\nRCPT TO:<r@s>\r\nDATA\r\n");
    for _ in 0..3 {
        reply(&mut c);
    }
    c.send(b"..hidden\r\n..\r\n...\r\nlast\r\n.\r\n");
    assert_eq!(code(&reply(&mut c)), "250");
    let mut bodies: Vec<Vec<u8>> = files(&dir)
        .iter()
        .map(|p| {
            let data = std::fs::read(p).unwrap();
            // Skip the two X-Sink-* lines.
            let mut rest = &data[..];
            for _ in 0..2 {
                assert!(rest.starts_with(b"X-Sink-"));
                let i = rest.windows(2).position(|w| w == b"\r\n").unwrap();
                rest = &rest[i + 2..];
            }
            rest.to_vec()
        })
        .collect();
    bodies.sort();
    assert_eq!(bodies, vec![b"".to_vec(), b".hidden\r\n.\r\n..\r\nlast\r\n".to_vec()]);
    assert_eq!(code(&cmd(&mut c, "QUIT")), "221");
    let mut s = c.r.into_inner();
    assert!(read_to_close(&mut s).is_empty());
    let (status, _) = server.stop();
    assert!(status.success());
}

#[test]
fn a_command_line_over_4_kib_gets_500_at_once() {
    let tmp = TempDir::new("smtp");
    let server = Server::start("smtp_sink", &["--dir", &mail_dir(&tmp)]);
    let mut c = Lines::new(server.connect());
    assert_eq!(code(&reply(&mut c)), "220");
    // 5000 bytes and no line end: the reply comes without waiting for one.
    c.send(format!("NOOP {}", "z".repeat(5000)).as_bytes());
    assert_eq!(code(&reply(&mut c)), "500");
    let mut s = c.r.into_inner();
    read_to_close(&mut s);
    let (status, _) = server.stop();
    assert!(status.success());
}

/// Floods one connection with 8 MiB and no line end (in the command phase, or inside DATA with
/// a 1 MiB limit) while another client completes a transaction.
fn flood(in_data: bool, backend: &str) {
    let tmp = TempDir::new("smtp");
    let dir = mail_dir(&tmp);
    let server = Server::start("smtp_sink", &["--backend", backend, "--dir", &dir, "--max-size", "1048576"]);
    let mut bad = Lines::new(server.connect());
    assert_eq!(code(&reply(&mut bad)), "220");
    if in_data {
        assert_eq!(code(&cmd(&mut bad, "EHLO x")), "250");
        assert_eq!(code(&cmd(&mut bad, "MAIL FROM:<a@b>")), "250");
        assert_eq!(code(&cmd(&mut bad, "RCPT TO:<c@d>")), "250");
        assert_eq!(code(&cmd(&mut bad, "DATA")), "354");
    }
    let mut w = bad.r.get_ref().try_clone().unwrap();
    let writer = thread::spawn(move || {
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..128 {
            if w.write_all(&chunk).is_err() {
                return; // closed by the server part way: expected
            }
        }
    });
    // Meanwhile another client is served.
    let mut good = Lines::new(server.connect());
    assert_eq!(code(&reply(&mut good)), "220");
    assert_eq!(code(&cmd(&mut good, "HELO y")), "250");
    assert_eq!(code(&cmd(&mut good, "MAIL FROM:<a@b>")), "250");
    assert_eq!(code(&cmd(&mut good, "RCPT TO:<c@d>")), "250");
    assert_eq!(code(&cmd(&mut good, "DATA")), "354");
    good.send(b"hello\r\n.\r\n");
    assert_eq!(code(&reply(&mut good)), "250");
    // The flooder gets its reply (unless a reset beats it) and is closed.
    let mut s = bad.r.into_inner();
    let got = String::from_utf8_lossy(&read_to_close(&mut s)).into_owned();
    let expect = if in_data { "552" } else { "500" };
    assert!(got.is_empty() || got.starts_with(expect), "{got:?}");
    writer.join().unwrap();
    let rss = server.rss_kib();
    assert!(rss < 64 * 1024, "server RSS {rss} KiB after an 8 MiB flood");
    assert_eq!(files(&dir).len(), 1);
    // The refused message left nothing behind in the temporary directory either.
    assert!(files(&tmp.0.join(".mail.smtp_sink.tmp").to_string_lossy()).is_empty());
    assert_eq!(code(&cmd(&mut good, "QUIT")), "221");
    let (status, _) = server.stop();
    assert!(status.success());
}

fn an_endless_command_line_closes_only_its_connection(backend: Backend) {
    flood(false, backend.name());
}

fn an_endless_data_line_closes_only_its_connection(backend: Backend) {
    flood(true, backend.name());
}

fn idle_timeout_answers_421(backend: Backend) {
    let tmp = TempDir::new("smtp");
    let server = Server::start(
        "smtp_sink",
        &["--backend", backend.name(), "--dir", &mail_dir(&tmp), "--idle-timeout", "1"],
    );
    let mut c = Lines::new(server.connect());
    assert_eq!(code(&reply(&mut c)), "220");
    assert_eq!(code(&cmd(&mut c, "HELO x")), "250");
    // Silence: the read timeout (30 s) is the deadline.
    assert_eq!(code(&reply(&mut c)), "421");
    let mut s = c.r.into_inner();
    read_to_close(&mut s);
    let (status, _) = server.stop();
    assert!(status.success());
}

#[test]
fn a_big_message_is_streamed_to_disk() {
    let tmp = TempDir::new("smtp");
    let dir = mail_dir(&tmp);
    let server = Server::start("smtp_sink", &["--dir", &dir, "--no-headers"]);
    let mut c = Lines::new(server.connect());
    assert_eq!(code(&reply(&mut c)), "220");
    c.send(b"EHLO x\r\nMAIL FROM:<a@b> SIZE=16777216\r\nRCPT TO:<c@d>\r\nDATA\r\n");
    for want in ["250", "250", "250", "354"] {
        assert_eq!(code(&reply(&mut c)), want);
    }
    // 16 MiB in 1 KiB lines, every 10th starting with a (stuffed) dot.
    let mut expect = Vec::with_capacity(16 << 20);
    let mut w = c.r.get_ref().try_clone().unwrap();
    let mut wire = Vec::with_capacity(1 << 20);
    for i in 0..16 * 1024 {
        let line = format!("{}{i:08} {}\r\n", if i % 10 == 0 { "." } else { "" }, "m".repeat(1013));
        expect.extend_from_slice(line.as_bytes());
        if i % 10 == 0 {
            wire.push(b'.');
        }
        wire.extend_from_slice(line.as_bytes());
        if wire.len() >= 1 << 20 {
            w.write_all(&wire).unwrap();
            wire.clear();
        }
    }
    wire.extend_from_slice(b".\r\n");
    w.write_all(&wire).unwrap();
    assert_eq!(code(&reply(&mut c)), "250");
    let names = files(&dir);
    assert_eq!(names.len(), 1);
    assert!(std::fs::read(&names[0]).unwrap() == expect, "the stored message differs");
    let rss = server.rss_kib();
    assert!(rss < 32 * 1024, "server RSS {rss} KiB after a 16 MiB message");
    let (status, _) = server.stop();
    assert!(status.success());
}

fn sigterm_answers_421_and_drops_a_message_in_progress(backend: Backend) {
    let tmp = TempDir::new("smtp");
    let dir = mail_dir(&tmp);
    let server = Server::start("smtp_sink", &["--backend", backend.name(), "--dir", &dir]);
    let mut idle = Lines::new(server.connect());
    assert_eq!(code(&reply(&mut idle)), "220");
    let mut busy = Lines::new(server.connect());
    assert_eq!(code(&reply(&mut busy)), "220");
    busy.send(b"HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nhalf a message\r\n");
    for want in ["250", "250", "250", "354"] {
        assert_eq!(code(&reply(&mut busy)), want);
    }
    // The message's first line came in the same write as DATA: the server has spooled it by
    // the time 354 arrives.
    assert_eq!(code(&cmd(&mut idle, "NOOP")), "250");
    server.terminate();
    for c in [idle, busy] {
        let mut s = c.r.into_inner();
        let got = String::from_utf8_lossy(&read_to_close(&mut s)).into_owned();
        assert!(got.starts_with("421 "), "{got:?}");
    }
    let (status, out) = server.stop();
    assert!(status.success());
    assert!(out.contains("accepted 0 messages"), "{out}");
    assert!(files(&dir).is_empty());
    assert!(files(&tmp.0.join(".mail.smtp_sink.tmp").to_string_lossy()).is_empty(), "a spool file was left");
}

fn a_command_line_dribbled_too_slowly_gets_421(backend: Backend) {
    let tmp = TempDir::new("smtp");
    let server = Server::start(
        "smtp_sink",
        &["--backend", backend.name(), "--dir", &mail_dir(&tmp), "--command-timeout", "1"],
    );
    let mut slow = Lines::new(server.connect());
    assert_eq!(code(&reply(&mut slow)), "220");
    slow.send(b"HELO x\r\nNOO"); // a command begun and never finished
    assert_eq!(code(&reply(&mut slow)), "250");
    // Complete commands are not timed: this client idles between them without harm.
    let mut ok = Lines::new(server.connect());
    assert_eq!(code(&reply(&mut ok)), "220");
    let got = reply(&mut slow); // the read timeout (30 s) is the deadline
    assert!(got.starts_with("421 ") && got.contains("command line timeout"), "{got:?}");
    let mut s = slow.r.into_inner();
    read_to_close(&mut s);
    assert_eq!(code(&cmd(&mut ok, "NOOP")), "250");
    let (status, _) = server.stop();
    assert!(status.success());
}

backend_tests!(
    smtplib_20_messages_over_4_connections,
    an_endless_command_line_closes_only_its_connection,
    an_endless_data_line_closes_only_its_connection,
    idle_timeout_answers_421,
    sigterm_answers_421_and_drops_a_message_in_progress,
    a_command_line_dribbled_too_slowly_gets_421
);
