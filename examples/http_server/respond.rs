//! The response to a GET or HEAD of a file under the root: validators, 304, ranges (206,
//! 416), the redirect of a directory named without its slash (301), and the body as a
//! [`FileProducer`] (sent with `sendfile`) or, for a small file, copied from the cache or read
//! into the head's buffer (see [`files::Tuning`]).

use crate::conditional::Conditions;
use crate::files::{self, Found};
use crate::range::{self, Range};
use crate::{request, response_head, simple_response, Config};
use sockloop::chat::{FileProducer, Producer, SharedProducer};
use std::borrow::Cow;
use std::fs::File;
use std::io;
use std::path::Path;
use std::rc::Rc;

/// The body of a file response that does not go with its head: from the cached contents (sent
/// from them, no copy per connection), or from the file with `sendfile`.
pub enum Body {
    Memory(SharedProducer<Rc<[u8]>>),
    File(FileProducer<Rc<File>>),
}

impl Producer for Body {
    fn more(&mut self) -> io::Result<Vec<u8>> {
        match self {
            Body::Memory(p) => p.more(),
            Body::File(p) => p.more(),
        }
    }

    fn sends_directly(&self) -> bool {
        match self {
            Body::Memory(p) => p.sends_directly(),
            Body::File(p) => p.sends_directly(),
        }
    }

    fn send_to(&mut self, channel: &mut sockloop::Channel) -> io::Result<usize> {
        match self {
            Body::Memory(p) => p.send_to(channel),
            Body::File(p) => p.send_to(channel),
        }
    }
}

/// What a GET or HEAD of a file asked.
pub struct FileRequest {
    pub segments: Vec<Vec<u8>>,
    /// The raw target, for the redirect's Location and the trailing slash.
    pub target: String,
    pub cond: Conditions,
    pub head_only: bool,
    pub keep_alive: bool,
}

/// The response head (with a small body) and the producer of the rest.
pub fn file(cfg: &Config, root: &Path, req: &FileRequest) -> io::Result<(Vec<u8>, Option<Body>)> {
    let (path, query) = request::path_and_query(&req.target);
    let (head_only, keep_alive) = (req.head_only, req.keep_alive);
    let entry = match files::lookup(root, &req.segments, path.ends_with('/')) {
        Found::File(e) => e,
        Found::Directory => {
            let extra = format!("Location: {path}/{query}\r\n");
            return Ok((simple_response(cfg, 301, keep_alive, head_only, &extra), None));
        }
        Found::Status(status) => return Ok((simple_response(cfg, status, keep_alive, head_only, ""), None)),
    };
    let validators = entry.validators.as_str();
    if req.cond.not_modified(&entry.etag, entry.mtime_secs) {
        let connection = if keep_alive { "keep-alive" } else { "close" };
        let head = format!(
            "HTTP/1.1 304 Not Modified\r\nServer: sockloop\r\nDate: {}\r\n{validators}Connection: {connection}\r\n\r\n",
            cfg.date()
        );
        return Ok((head.into_bytes(), None));
    }
    let len = entry.len;
    let wanted = match &req.cond.range {
        Some(r) if req.cond.range_applies(&entry.etag, entry.mtime_secs) => range::parse(r, len),
        _ => Range::Whole,
    };
    let (status, start, count, extra) = match wanted {
        Range::Whole => (200, 0, len, Cow::Borrowed(validators)),
        Range::Part(first, last) => (
            206,
            first,
            last - first + 1,
            Cow::Owned(format!("{validators}Content-Range: bytes {first}-{last}/{len}\r\n")),
        ),
        Range::Unsatisfiable => {
            let extra = format!("{validators}Content-Range: bytes */{len}\r\n");
            return Ok((simple_response(cfg, 416, keep_alive, head_only, &extra), None));
        }
    };
    let mut out = response_head(cfg, status, keep_alive, entry.content_type, count, &extra);
    if head_only || count == 0 {
        return Ok((out, None));
    }
    let tuning = files::tuning();
    if let Some(contents) = &entry.contents {
        let range = start as usize..(start + count) as usize;
        if count <= tuning.inline_max {
            out.extend_from_slice(&contents[range]);
            return Ok((out, None));
        }
        return Ok((out, Some(Body::Memory(SharedProducer::new(contents.clone(), range)))));
    }
    let body = FileProducer::new(entry.file.clone(), start, count);
    if count <= tuning.inline_max {
        out.extend_from_slice(&body.copy(count as usize).more()?);
        return Ok((out, None));
    }
    Ok((out, Some(Body::File(if tuning.copy { body.copy(64 * 1024) } else { body }))))
}
