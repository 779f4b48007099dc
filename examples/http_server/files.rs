//! The open-file cache: descriptors and metadata of hot files under the root, resolved inside
//! it without a `canonicalize` per request, and revalidated so the file on disk stays the
//! truth.
//!
//! **Resolution.** A path is opened with `openat2(root, path, RESOLVE_BENEATH |
//! RESOLVE_NO_MAGICLINKS)`: the kernel walks it and refuses (`EXDEV`) any step that would leave
//! the root, by `..` or by a symlink, made before or after the first request; an absolute
//! symlink is refused even when it points back inside (the conservative reading of "inside").
//! One system call per resolution instead of one `lstat` per component. Where `openat2` is
//! missing (Linux before 5.6: `ENOSYS`) the path is canonicalized and checked against the
//! canonical root, as before.
//!
//! **Freshness.** An entry is trusted for [`FRESH`] (one second) after it was resolved; the first
//! request after that resolves the path again and takes the new descriptor and metadata. So a
//! file replaced by rename, rewritten in place (new size or mtime), or deleted is seen within
//! one second, and no descriptor of a file that has left that path is served after that second.
//! A response under way keeps its own descriptor (an `Rc`) and the length it promised.
//!
//! **Bounds.** At most [`MAX_ENTRIES`] entries, one descriptor each; when full, the least
//! recently used eighth goes. Failures (404, 403) are not cached. Files up to
//! [`Tuning::memory_max`] bytes (64 KiB) also keep their contents, read when the entry is resolved (so
//! they too are at most a second old), up to [`MEMORY_TOTAL`] bytes per thread.
//!
//! Kept in the example rather than the library: its verdicts (which status for which failure,
//! index.html for directories, the ETag format) are HTTP's; the part a second server would
//! share (openat2 beneath a root plus a one-second revalidation) is small enough to move into
//! `src/` when one exists.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How long a resolved entry is trusted before the path is resolved again.
pub const FRESH: Duration = Duration::from_secs(1);
/// Most entries (and so cached descriptors) per loop thread.
pub const MAX_ENTRIES: usize = 4096;
/// Most bytes of file contents kept in memory per loop thread.
pub const MEMORY_TOTAL: usize = 16 << 20;

/// How file bodies are sent, by size. Defaults chosen by the measurements in
/// `docs/benchmarks.md`; the environment variables exist to repeat them.
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// Files up to this size keep their contents in the cache (`SOCKLOOP_HTTP_MEMORY_MAX`,
    /// bytes; 0: none).
    pub memory_max: u64,
    /// Bodies up to this size are copied into the head's buffer, from memory or read with
    /// `pread`; larger ones are sent after it, straight from memory or with `sendfile`
    /// (`SOCKLOOP_HTTP_INLINE_MAX`, bytes).
    pub inline_max: u64,
    /// Larger bodies are read and sent in 64 KiB chunks instead of `sendfile`
    /// (`SOCKLOOP_HTTP_COPY=1`).
    pub copy: bool,
}

/// The tuning, read from the environment once.
pub fn tuning() -> Tuning {
    static TUNING: std::sync::OnceLock<Tuning> = std::sync::OnceLock::new();
    *TUNING.get_or_init(|| {
        let num = |name: &str, default: u64| {
            std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
        };
        Tuning {
            // Measured (docs/benchmarks.md): from memory costs the same as sendfile at 64 KiB,
            // 1.3x at 256 KiB and 2x at 1 MiB; below 64 KiB memory wins (2 KiB: 0.9x of pread,
            // 0.6x of sendfile).
            memory_max: num("SOCKLOOP_HTTP_MEMORY_MAX", 64 * 1024),
            inline_max: num("SOCKLOOP_HTTP_INLINE_MAX", 32 * 1024),
            copy: std::env::var("SOCKLOOP_HTTP_COPY").is_ok_and(|v| v == "1"),
        }
    })
}

/// A file under the root, as resolved at `checked`.
pub struct Entry {
    pub file: Rc<File>,
    pub len: u64,
    pub mtime_secs: u64,
    pub etag: String,
    /// `Last-Modified`, `ETag` and `Accept-Ranges` header lines, formatted once.
    pub validators: String,
    pub content_type: &'static str,
    /// The contents, for a small file (read when the entry was resolved).
    pub contents: Option<Rc<[u8]>>,
    checked: Instant,
    used: Cell<u64>,
}

/// What a path names.
pub enum Found {
    File(Rc<Entry>),
    /// A directory named without its trailing slash: redirect.
    Directory,
    /// A refusal: 403 or 404.
    Status(u16),
}

struct Cache {
    root: PathBuf,
    dir: File,
    entries: HashMap<Vec<u8>, Rc<Entry>>,
    clock: u64,
    openat2: bool,
    /// Bytes of contents held by the entries.
    memory: usize,
}

thread_local! {
    static CACHE: RefCell<Option<Cache>> = const { RefCell::new(None) };
}

/// Looks up `segments` (already checked by `request::path_segments`) under `root` (canonical);
/// `slash` says whether the request path ended with `/`. A directory with its slash serves its
/// `index.html`.
pub fn lookup(root: &Path, segments: &[Vec<u8>], slash: bool) -> Found {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.as_ref().is_none_or(|c| c.root != root) {
            match File::open(root) {
                Ok(dir) => {
                    *c = Some(Cache {
                        root: root.to_path_buf(),
                        dir,
                        entries: HashMap::new(),
                        clock: 0,
                        openat2: true,
                        memory: 0,
                    })
                }
                Err(_) => return Found::Status(404),
            }
        }
        c.as_mut().expect("set above").lookup(segments, slash)
    })
}

/// This thread's cache: (entries, bytes of contents held). For tests/file_cache.rs.
#[allow(dead_code)]
pub fn usage() -> (usize, usize) {
    CACHE.with(|c| c.borrow().as_ref().map_or((0, 0), |c| (c.entries.len(), c.memory)))
}

fn status_of(e: &io::Error) -> u16 {
    match e.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EXDEV) | Some(libc::ELOOP) => 403,
        _ => 404,
    }
}

impl Cache {
    fn lookup(&mut self, segments: &[Vec<u8>], slash: bool) -> Found {
        let mut key = segments.join(&b'/');
        if slash && !segments.is_empty() {
            key.push(b'/');
        }
        self.clock += 1;
        if let Some(e) = self.entries.get_mut(&key) {
            if e.checked.elapsed() < FRESH {
                e.used.set(self.clock);
                return Found::File(e.clone());
            }
        }
        self.remove(&key);
        let rel: Vec<u8> = if segments.is_empty() { b".".to_vec() } else { segments.join(&b'/') };
        let (file, meta) = match self.open(&rel) {
            Ok(x) => x,
            Err(e) => return Found::Status(status_of(&e)),
        };
        let (file, meta, name) = if meta.is_dir() {
            if !slash {
                return Found::Directory;
            }
            let mut index = rel.clone();
            index.extend_from_slice(b"/index.html");
            match self.open(&index) {
                Ok((f, m)) => (f, m, index),
                Err(e) => return Found::Status(status_of(&e)),
            }
        } else if slash {
            return Found::Status(404); // a file named as a directory (what open(2) says: ENOTDIR)
        } else {
            (file, meta, rel)
        };
        if !meta.is_file() {
            return Found::Status(403);
        }
        if self.entries.len() >= MAX_ENTRIES {
            // The least recently used eighth goes at once: one pass over the map per
            // MAX_ENTRIES / 8 misses, not one per miss.
            let mut ages: Vec<(u64, Vec<u8>)> =
                self.entries.iter().map(|(k, e)| (e.used.get(), k.clone())).collect();
            let cut = MAX_ENTRIES / 8;
            ages.select_nth_unstable_by_key(cut, |(used, _)| *used);
            for (_, k) in &ages[..cut] {
                self.remove(k);
            }
        }
        let mtime_secs = meta.mtime().max(0) as u64;
        let len = meta.len();
        let contents: Option<Rc<[u8]>> =
            if len > 0 && len <= tuning().memory_max && self.memory + len as usize <= MEMORY_TOTAL {
                read_all(&file, len).map(Rc::from)
            } else {
                None
            };
        self.memory += contents.as_ref().map_or(0, |c| c.len());
        let etag = format!("\"{:x}-{:x}-{:x}.{:x}\"", meta.ino(), len, mtime_secs, meta.mtime_nsec());
        let last_modified = crate::http_date(mtime_secs);
        let entry = Rc::new(Entry {
            file: Rc::new(file),
            len,
            mtime_secs,
            validators: format!("Last-Modified: {last_modified}\r\nETag: {etag}\r\nAccept-Ranges: bytes\r\n"),
            etag,
            contents,
            content_type: crate::mime::content_type(&name),
            checked: Instant::now(),
            used: Cell::new(self.clock),
        });
        self.entries.insert(key, entry.clone());
        Found::File(entry)
    }

    fn remove(&mut self, key: &[u8]) {
        if let Some(e) = self.entries.remove(key) {
            self.memory -= e.contents.as_ref().map_or(0, |c| c.len());
        }
    }

    /// Opens `rel` beneath the root (non-blocking, so a FIFO cannot stall the loop) and stats it.
    fn open(&mut self, rel: &[u8]) -> io::Result<(File, std::fs::Metadata)> {
        use rustix::fs::{Mode, OFlags, ResolveFlags};
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
        let file = if self.openat2 {
            let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
            match rustix::fs::openat2(&self.dir, rel, flags, Mode::empty(), resolve) {
                Ok(fd) => File::from(fd),
                Err(rustix::io::Errno::NOSYS) => {
                    self.openat2 = false;
                    return self.open(rel);
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            let path = self.root.join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(rel));
            let real = std::fs::canonicalize(path)?;
            if !real.starts_with(&self.root) {
                return Err(io::Error::from_raw_os_error(libc::EXDEV));
            }
            let fd = rustix::fs::open(&real, flags, Mode::empty())?;
            File::from(fd)
        };
        let meta = file.metadata()?;
        Ok((file, meta))
    }
}

/// The whole file, if it still has `len` bytes.
fn read_all(file: &File, len: u64) -> Option<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, 0).ok()?;
    Some(buf)
}
