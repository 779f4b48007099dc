//! HTTP/1.x request heads (RFC 9112) parsed from bytes, and request targets turned into path
//! segments that cannot leave a root. Pure functions with no I/O, so they can be fuzzed alone.

/// Longest request target accepted (longer: 414).
pub const MAX_TARGET: usize = 4096;
/// Most header fields accepted (more: 431).
pub const MAX_HEADERS: usize = 100;

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub target: String,
    /// The minor version: 0 or 1 (the major is always 1).
    pub minor: u8,
    /// Field names lowercased, values with surrounding whitespace removed.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body length from Content-Length (0 without one).
    pub content_length: u64,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
}

/// Why a head or a target was refused: the status to answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub why: &'static str,
}

const fn refuse(status: u16, why: &'static str) -> Refusal {
    Refusal { status, why }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parses a request head: the bytes before the blank line, without it. Empty lines before the
/// request line are skipped (RFC 9112 section 2.2).
pub fn parse_head(head: &[u8]) -> Result<Request, Refusal> {
    let mut head = head;
    while let Some(rest) = head.strip_prefix(b"\r\n") {
        head = rest;
    }
    let mut lines = head.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        if request_line.len() > MAX_TARGET {
            return Err(refuse(414, "request target too long"));
        }
        return Err(refuse(400, "malformed request line"));
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(refuse(400, "malformed method"));
    }
    if target.len() > MAX_TARGET {
        return Err(refuse(414, "request target too long"));
    }
    if target.is_empty() || !target.iter().all(|&b| (0x21..0x7f).contains(&b)) {
        return Err(refuse(400, "malformed request target"));
    }
    let minor = match version {
        b"HTTP/1.1" => 1,
        b"HTTP/1.0" => 0,
        _ => return Err(refuse(400, "unsupported or malformed HTTP version")),
    };
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            return Err(refuse(400, "empty line inside the head"));
        }
        if line[0] == b' ' || line[0] == b'\t' {
            return Err(refuse(400, "obsolete line folding"));
        }
        let colon = line.iter().position(|&b| b == b':').ok_or(refuse(400, "header line without a colon"))?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(refuse(400, "malformed header name"));
        }
        if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(refuse(400, "control character in a header value"));
        }
        if headers.len() == MAX_HEADERS {
            return Err(refuse(431, "too many header fields"));
        }
        let value = value.trim_ascii().to_vec();
        headers.push((String::from_utf8_lossy(name).to_ascii_lowercase(), value));
    }
    let mut req = Request {
        method: String::from_utf8_lossy(method).into_owned(),
        target: String::from_utf8_lossy(target).into_owned(),
        minor,
        headers,
        content_length: 0,
        keep_alive: minor == 1,
    };
    if minor == 1 && req.headers.iter().filter(|(n, _)| n == "host").count() != 1 {
        return Err(refuse(400, "an HTTP/1.1 request needs exactly one Host header"));
    }
    let mut length: Option<u64> = None;
    for (name, value) in &req.headers {
        match name.as_str() {
            "content-length" => {
                for item in value.split(|&b| b == b',') {
                    let item = item.trim_ascii();
                    if item.is_empty() || item.len() > 18 || !item.iter().all(u8::is_ascii_digit) {
                        return Err(refuse(400, "malformed Content-Length"));
                    }
                    let n: u64 = std::str::from_utf8(item).ok().and_then(|s| s.parse().ok()).unwrap_or(0);
                    if length.is_some_and(|l| l != n) {
                        return Err(refuse(400, "conflicting Content-Length values"));
                    }
                    length = Some(n);
                }
            }
            "transfer-encoding" => {
                if minor == 0 {
                    return Err(refuse(400, "Transfer-Encoding in an HTTP/1.0 request"));
                }
                return Err(refuse(501, "request bodies with a Transfer-Encoding are not supported"));
            }
            "connection" => {
                for token in value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        req.keep_alive = false;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") && minor == 0 {
                        req.keep_alive = true;
                    }
                }
            }
            _ => {}
        }
    }
    // "close" wins over "keep-alive" whatever their order.
    let close = req
        .headers
        .iter()
        .filter(|(n, _)| n == "connection")
        .any(|(_, v)| v.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close")));
    if close {
        req.keep_alive = false;
    }
    req.content_length = length.unwrap_or(0);
    Ok(req)
}

/// The path and the query (with its `?`, or empty) of a request target in origin or
/// absolute form, still percent-encoded: what a redirect to the same path with a `/` keeps.
pub fn path_and_query(target: &str) -> (&str, &str) {
    let path = match target.strip_prefix("http://").or_else(|| target.strip_prefix("https://")) {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    let path = path.split('#').next().unwrap_or(path);
    match path.find('?') {
        Some(i) => (&path[..i], &path[i..]),
        None => (path, ""),
    }
}

/// The path of a request target (origin form `/a/b?q`, or absolute form `http://h/a/b`) as
/// decoded segments, safe to join under a root: no segment is empty, `.` or `..`, or holds
/// `/`, `\` or NUL after percent-decoding. A target that tries to climb out is refused (400).
pub fn path_segments(target: &str) -> Result<Vec<Vec<u8>>, Refusal> {
    let path = if let Some(rest) = target.strip_prefix("http://").or_else(|| target.strip_prefix("https://"))
    {
        match rest.find('/') {
            Some(i) => &rest[i..],
            None => "/",
        }
    } else {
        target
    };
    if !path.starts_with('/') {
        return Err(refuse(400, "the request target is not a path"));
    }
    let path = path.split(['?', '#']).next().unwrap_or("/");
    let mut segments = Vec::new();
    for raw in path.split('/') {
        let seg = percent_decode(raw.as_bytes()).ok_or(refuse(400, "malformed percent-encoding"))?;
        if seg.is_empty() || seg == b"." {
            continue;
        }
        if seg == b".." {
            return Err(refuse(400, "the path climbs out of the root"));
        }
        if seg.iter().any(|&b| b == b'/' || b == b'\\' || b == 0) {
            return Err(refuse(400, "an encoded separator or NUL in the path"));
        }
        segments.push(seg);
    }
    Ok(segments)
}

fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        let r = parse_head(b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close").unwrap();
        assert_eq!((r.method.as_str(), r.target.as_str(), r.minor, r.keep_alive), ("GET", "/a", 1, false));
        assert!(!parse_head(b"GET /a HTTP/1.0").unwrap().keep_alive);
        assert!(parse_head(b"GET /a HTTP/1.0\r\nConnection: Keep-Alive").unwrap().keep_alive);
        assert_eq!(parse_head(b"GET /a HTTP/2.0\r\nHost: x").unwrap_err().status, 400);
        assert_eq!(parse_head(b"GET /a\r\nHost: x").unwrap_err().status, 400);
        assert_eq!(parse_head(b"GET /a HTTP/1.1").unwrap_err().status, 400);
        assert_eq!(
            parse_head(b"GET /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked").unwrap_err().status,
            501
        );
        assert_eq!(
            parse_head(b"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 2").unwrap_err().status,
            400
        );
        assert_eq!(parse_head(b"GET /a HTTP/1.1\r\nHost : x").unwrap_err().status, 400);
        assert_eq!(
            parse_head(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5").unwrap().content_length,
            5
        );
    }

    #[test]
    fn paths() {
        assert_eq!(
            path_segments("/a/./b//c?x=1").unwrap(),
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
        );
        assert!(path_segments("/../etc/passwd").is_err());
        assert!(path_segments("/%2e%2e/etc/passwd").is_err());
        assert!(path_segments("/a%2f..%2fb").is_err());
        assert!(path_segments("/a%00").is_err());
        assert!(path_segments("/a%zz").is_err());
        assert!(path_segments("*").is_err());
        assert_eq!(path_and_query("/a/b?x=1#f"), ("/a/b", "?x=1"));
        assert_eq!(path_and_query("http://h/sub"), ("/sub", ""));
        assert_eq!(path_and_query("http://h"), ("/", ""));
    }
}
