//! Terminators: what ends a record (asynchat's `set_terminator` argument), and the search for a
//! terminator that may be split across reads.

/// What ends a record, as asynchat's `set_terminator` took it: a byte string, a byte count, or
/// nothing (every byte goes to `collect_incoming_data` as it arrives).
///
/// A count of 0 means "nothing left to count": data is then delivered as with `None` until a
/// new terminator is set (asynchat's behaviour once a numeric terminator is used up).
///
/// ```
/// use sockloop::chat::Terminator;
/// assert_eq!(Terminator::from("\r\n"), Terminator::Bytes(b"\r\n".to_vec()));
/// assert_eq!(Terminator::from(6usize), Terminator::Count(6));
/// assert_eq!(Terminator::from(""), Terminator::None);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Terminator {
    /// No terminator: deliver everything as it comes.
    #[default]
    None,
    /// A record ends with these bytes (not delivered).
    Bytes(Vec<u8>),
    /// A record is this many more bytes.
    Count(usize),
}

impl Terminator {
    /// Whether records are delimited at all (a non-empty string or a non-zero count).
    ///
    /// ```
    /// use sockloop::chat::Terminator;
    /// assert!(Terminator::from("\n").is_active());
    /// assert!(!Terminator::Count(0).is_active());
    /// ```
    pub fn is_active(&self) -> bool {
        match self {
            Terminator::None => false,
            Terminator::Bytes(b) => !b.is_empty(),
            Terminator::Count(n) => *n > 0,
        }
    }
}

impl From<&[u8]> for Terminator {
    fn from(b: &[u8]) -> Terminator {
        if b.is_empty() {
            Terminator::None
        } else {
            Terminator::Bytes(b.to_vec())
        }
    }
}

impl<const N: usize> From<&[u8; N]> for Terminator {
    fn from(b: &[u8; N]) -> Terminator {
        Terminator::from(&b[..])
    }
}

impl From<&str> for Terminator {
    fn from(s: &str) -> Terminator {
        Terminator::from(s.as_bytes())
    }
}

impl From<usize> for Terminator {
    fn from(n: usize) -> Terminator {
        Terminator::Count(n)
    }
}

impl From<Option<Terminator>> for Terminator {
    fn from(t: Option<Terminator>) -> Terminator {
        t.unwrap_or(Terminator::None)
    }
}

/// asynchat's `find_prefix_at_end(haystack, needle)`: the length of the longest proper prefix
/// of `needle` that `haystack` ends with, i.e. how many trailing bytes may be the start of a
/// terminator split across reads and must be kept for the next one.
///
/// ```
/// use sockloop::chat::find_prefix_at_end;
/// assert_eq!(find_prefix_at_end(b"qwerty\r", b"\r\n"), 1);
/// assert_eq!(find_prefix_at_end(b"qwertydkjf", b"\r\n"), 0);
/// assert_eq!(find_prefix_at_end(b"data\r\n.\r", b"\r\n.\r\n"), 4);
/// ```
pub fn find_prefix_at_end(haystack: &[u8], needle: &[u8]) -> usize {
    let mut l = needle.len().saturating_sub(1).min(haystack.len());
    while l > 0 && !haystack.ends_with(&needle[..l]) {
        l -= 1;
    }
    l
}

/// Where the terminator is in `data`, if it is there.
pub(crate) fn find(data: &[u8], terminator: &[u8]) -> Option<usize> {
    match terminator {
        [b] => memchr::memchr(*b, data),
        _ => memchr::memmem::find(data, terminator),
    }
}
