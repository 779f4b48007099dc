//! One HTTP/1.1 response as the tests read it off a raw connection: the head parsed strictly
//! (status line, CRLF-terminated headers), the body read by the caller's rule.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header of that name, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Reads exactly `len` body bytes after the head.
    pub fn read_body(&mut self, r: &mut BufReader<TcpStream>, len: usize) {
        self.body = vec![0; len];
        r.read_exact(&mut self.body).expect("body");
    }
}

/// Reads a status line and headers up to the blank line; the body is left unread (empty).
pub fn read_head(r: &mut BufReader<TcpStream>) -> Response {
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    assert!(line.starts_with("HTTP/1.1 "), "bad status line {line:?}");
    let status = line[9..12].parse().unwrap();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).expect("header line");
        assert!(h.ends_with("\r\n"), "truncated head");
        if h == "\r\n" {
            break;
        }
        let (k, v) = h.split_once(':').expect("a header");
        headers.push((k.to_string(), v.trim().to_string()));
    }
    Response { status, headers, body: Vec::new() }
}
