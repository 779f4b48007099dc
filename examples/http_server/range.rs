//! `Range: bytes=...` (RFC 9110 section 14) for one representation of a known length.

/// What a Range header asks of a file of a given length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// No usable range (absent, malformed, another unit, or several ranges): the whole file, 200.
    Whole,
    /// One satisfiable range, first and last byte inclusive: 206.
    Part(u64, u64),
    /// A well-formed range that selects nothing: 416 with `Content-Range: bytes */LEN`.
    Unsatisfiable,
}

fn number(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// Parses a Range header value against a file of `len` bytes. `a-b`, `a-` and `-n` are
/// served; an end past the file is clipped; a malformed value is ignored; several ranges are
/// served as the whole file (200), which RFC 9110 allows.
pub fn parse(value: &[u8], len: u64) -> Range {
    let value = value.trim_ascii();
    let Some(eq) = value.iter().position(|&b| b == b'=') else { return Range::Whole };
    if !value[..eq].trim_ascii().eq_ignore_ascii_case(b"bytes") {
        return Range::Whole;
    }
    let mut specs = value[eq + 1..].split(|&b| b == b',').map(<[u8]>::trim_ascii).filter(|s| !s.is_empty());
    let (Some(spec), None) = (specs.next(), specs.next()) else { return Range::Whole };
    let Some(dash) = spec.iter().position(|&b| b == b'-') else { return Range::Whole };
    let (first, last) = (&spec[..dash], &spec[dash + 1..]);
    if first.is_empty() {
        return match number(last) {
            None => Range::Whole,
            Some(0) => Range::Unsatisfiable,
            Some(_) if len == 0 => Range::Unsatisfiable,
            Some(n) => Range::Part(len.saturating_sub(n), len - 1),
        };
    }
    let Some(start) = number(first) else { return Range::Whole };
    let end = if last.is_empty() {
        u64::MAX
    } else {
        match number(last) {
            Some(end) if end >= start => end,
            _ => return Range::Whole,
        }
    };
    if start >= len {
        return Range::Unsatisfiable;
    }
    Range::Part(start, end.min(len - 1))
}

#[cfg(test)]
mod tests {
    use super::{parse, Range::*};

    #[test]
    fn ranges() {
        assert_eq!(parse(b"bytes=0-9", 100), Part(0, 9));
        assert_eq!(parse(b"bytes=90-", 100), Part(90, 99));
        assert_eq!(parse(b"bytes=-10", 100), Part(90, 99));
        assert_eq!(parse(b"bytes=-1000", 100), Part(0, 99));
        assert_eq!(parse(b"bytes=50-1000", 100), Part(50, 99));
        assert_eq!(parse(b"Bytes = 1-1", 100), Part(1, 1));
        assert_eq!(parse(b"bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse(b"bytes=100-200", 100), Unsatisfiable);
        assert_eq!(parse(b"bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse(b"bytes=0-", 0), Unsatisfiable);
        assert_eq!(parse(b"bytes=-5", 0), Unsatisfiable);
        for bad in
            [&b"bytes=5-1"[..], b"bytes=a-b", b"bytes=-", b"bytes=", b"items=0-1", b"0-1", b"bytes=1-2-3"]
        {
            assert_eq!(parse(bad, 100), Whole, "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse(b"bytes=0-1,5-6", 100), Whole);
        assert_eq!(parse(b"bytes=0-1, ", 100), Part(0, 1));
        assert_eq!(parse(b"bytes=99999999999999999999-", 100), Whole);
    }
}
