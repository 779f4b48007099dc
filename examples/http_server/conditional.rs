//! Validators and conditional requests (RFC 9110 section 13): `If-None-Match` (which takes
//! precedence), `If-Modified-Since`, and `If-Range`.

/// The request headers that make a GET or HEAD conditional or partial.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conditions {
    /// Every If-None-Match value, joined with commas.
    pub if_none_match: Option<Vec<u8>>,
    pub if_modified_since: Option<Vec<u8>>,
    pub range: Option<Vec<u8>>,
    pub if_range: Option<Vec<u8>>,
}

impl Conditions {
    /// Picks the headers out of a parsed request's (lowercased names).
    pub fn of(headers: &[(String, Vec<u8>)]) -> Conditions {
        let mut c = Conditions::default();
        for (name, value) in headers {
            match name.as_str() {
                "if-none-match" => match &mut c.if_none_match {
                    Some(v) => {
                        v.push(b',');
                        v.extend_from_slice(value);
                    }
                    None => c.if_none_match = Some(value.clone()),
                },
                "if-modified-since" => c.if_modified_since = Some(value.clone()),
                "range" => c.range = Some(value.clone()),
                "if-range" => c.if_range = Some(value.clone()),
                _ => {}
            }
        }
        c
    }

    /// Whether a GET or HEAD of a file with these validators answers 304: If-None-Match
    /// when present (weak comparison, `*` matches any file), else If-Modified-Since (a date
    /// that does not parse is ignored).
    pub fn not_modified(&self, etag: &str, mtime_secs: u64) -> bool {
        if let Some(inm) = &self.if_none_match {
            return inm.trim_ascii() == b"*"
                || inm.split(|&b| b == b',').any(|t| weak(t.trim_ascii()) == weak(etag.as_bytes()));
        }
        match self.if_modified_since.as_deref().and_then(parse_http_date) {
            Some(since) => mtime_secs <= since,
            None => false,
        }
    }

    /// Whether a Range applies: no If-Range, or one that matches the current file (an ETag
    /// compared strongly, or exactly the Last-Modified date). A stale one gives the whole file.
    pub fn range_applies(&self, etag: &str, mtime_secs: u64) -> bool {
        let Some(v) = &self.if_range else { return true };
        let v = v.trim_ascii();
        if v.starts_with(b"\"") || v.starts_with(b"W/") {
            return v == etag.as_bytes() && !etag.starts_with("W/");
        }
        parse_http_date(v) == Some(mtime_secs)
    }
}

/// An entity tag without its weakness indicator.
fn weak(tag: &[u8]) -> &[u8] {
    tag.strip_prefix(b"W/").unwrap_or(tag)
}

/// Parses an HTTP date: IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), or the obsolete RFC 850
/// (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`) forms, to
/// seconds since the epoch. The weekday is not checked.
pub fn parse_http_date(s: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(s).ok()?.trim();
    let words: Vec<&str> = s.split_ascii_whitespace().collect();
    let (day, month, year, time): (i64, &str, i64, &str) = match words.as_slice() {
        [_, d, m, y, t, "GMT"] => (d.parse().ok()?, *m, y.parse().ok()?, *t),
        [_, dmy, t, "GMT"] => {
            let mut p = dmy.split('-');
            let (d, m, y) = (p.next()?, p.next()?, p.next()?);
            let y: i64 = y.parse().ok()?;
            (
                d.parse().ok()?,
                m,
                if y < 70 {
                    2000 + y
                } else if y < 100 {
                    1900 + y
                } else {
                    y
                },
                *t,
            )
        }
        [_, m, d, t, y] => (d.parse().ok()?, *m, y.parse().ok()?, *t),
        _ => return None,
    };
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let month = MONTHS.iter().position(|&m| m == month)? as i64 + 1;
    let mut hms = time.split(':').map(|x| x.parse::<i64>().ok());
    let (h, mi, se) = (hms.next()??, hms.next()??, hms.next()??);
    if !(1..=31).contains(&day) || h > 23 || mi > 59 || se > 60 || year < 1970 {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let (y, m) = if month <= 2 { (year - 1, month + 9) } else { (year, month - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86400 + h * 3600 + mi * 60 + se).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(parse_http_date(b"Sun Nov  6 08:49:37 1994"), Some(784_111_777));
        assert_eq!(parse_http_date(b"Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date(b"yesterday"), None);
        assert_eq!(parse_http_date(b"Sun, 06 Foo 1994 08:49:37 GMT"), None);
        assert_eq!(parse_http_date(b"Tue, 01 Dec 2026 09:41:25 GMT"), Some(1_796_118_085));
        assert_eq!(parse_http_date(b"Thu, 29 Feb 2024 23:59:59 GMT"), Some(1_709_251_199));
    }

    #[test]
    fn preconditions() {
        let tag = "\"a-b-c\"";
        let c = |inm: Option<&str>, ims: Option<&str>| Conditions {
            if_none_match: inm.map(|s| s.as_bytes().to_vec()),
            if_modified_since: ims.map(|s| s.as_bytes().to_vec()),
            ..Conditions::default()
        };
        let t = 784_111_777;
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert!(c(Some(tag), None).not_modified(tag, t));
        assert!(c(Some("\"x\", W/\"a-b-c\""), None).not_modified(tag, t));
        assert!(c(Some("*"), None).not_modified(tag, t));
        assert!(!c(Some("\"x\""), Some(date)).not_modified(tag, t)); // If-None-Match wins
        assert!(c(None, Some(date)).not_modified(tag, t));
        assert!(!c(None, Some(date)).not_modified(tag, t + 1));
        assert!(!c(None, Some("garbage")).not_modified(tag, t));
        let r = |v: &str| Conditions { if_range: Some(v.as_bytes().to_vec()), ..Conditions::default() };
        assert!(Conditions::default().range_applies(tag, t));
        assert!(r(tag).range_applies(tag, t));
        assert!(!r("W/\"a-b-c\"").range_applies(tag, t));
        assert!(!r("\"old\"").range_applies(tag, t));
        assert!(r(date).range_applies(tag, t));
        assert!(!r(date).range_applies(tag, t + 1));
    }
}
