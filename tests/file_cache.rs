//! The open-file cache of http_server (`examples/http_server/files.rs`), compiled here from
//! the example's own file: bounded in entries, descriptors and bytes held; what it refuses
//! (escapes by symlink, absolute symlinks, FIFOs, files named as directories); what a
//! directory resolves to.

#[allow(dead_code)]
#[path = "../examples/http_server/mime.rs"]
mod mime;

/// What files.rs asks of its crate: the HTTP date (its format does not matter here).
fn http_date(secs: u64) -> String {
    format!("@{secs}")
}

#[allow(dead_code)]
#[path = "../examples/http_server/files.rs"]
mod files;

mod support;

use files::Found;
use std::path::Path;
use support::TempDir;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn seg(path: &str) -> Vec<Vec<u8>> {
    path.split('/').filter(|s| !s.is_empty()).map(|s| s.as_bytes().to_vec()).collect()
}

fn status(root: &Path, path: &str) -> u16 {
    match files::lookup(root, &seg(path), path.ends_with('/')) {
        Found::File(_) => 200,
        Found::Directory => 301,
        Found::Status(s) => s,
    }
}

#[test]
fn bounded_in_entries_descriptors_and_memory() {
    let tmp = TempDir::new("fcache");
    let root = std::fs::canonicalize(&tmp.0).unwrap();
    let n = files::MAX_ENTRIES + 300;
    for i in 0..n {
        std::fs::write(root.join(format!("f{i}.txt")), vec![b'x'; 8 * 1024]).unwrap();
    }
    let fds = open_fds();
    for round in 0..2 {
        for i in 0..n {
            match files::lookup(&root, &seg(&format!("/f{i}.txt")), false) {
                Found::File(e) => assert_eq!(e.len, 8192),
                _ => panic!("f{i}.txt not served (round {round})"),
            }
        }
    }
    let (entries, memory) = files::usage();
    assert!(entries <= files::MAX_ENTRIES && entries > files::MAX_ENTRIES / 2, "{entries} entries");
    // Contents are kept until MEMORY_TOTAL is reached; later entries keep only the descriptor.
    assert!(memory > 0 && memory <= files::MEMORY_TOTAL && memory % 8192 == 0, "{memory} bytes held");
    let now = open_fds();
    assert!(now <= fds + files::MAX_ENTRIES + 16, "{fds} descriptors before, {now} after");
}

#[test]
fn refusals_and_directories() {
    let tmp = TempDir::new("fcache-r");
    let base = std::fs::canonicalize(&tmp.0).unwrap();
    let root = base.join("root");
    std::fs::create_dir_all(root.join("dir/deeper")).unwrap();
    std::fs::write(base.join("secret"), b"s").unwrap();
    std::fs::write(root.join("dir/index.html"), b"i").unwrap();
    std::fs::write(root.join("a.txt"), b"a").unwrap();
    std::os::unix::fs::symlink(base.join("secret"), root.join("abs-out")).unwrap();
    std::os::unix::fs::symlink(root.join("a.txt"), root.join("abs-in")).unwrap();
    std::os::unix::fs::symlink("../secret", root.join("rel-out")).unwrap();
    std::os::unix::fs::symlink("dir/../a.txt", root.join("rel-in")).unwrap();
    std::os::unix::fs::symlink("/proc/self/root/etc/passwd", root.join("magic")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    for (path, want) in [
        ("/a.txt", 200),
        ("/rel-in", 200),
        ("/abs-in", 403), // absolute symlinks are refused even when they point inside
        ("/abs-out", 403),
        ("/rel-out", 403),
        ("/magic", 403),
        ("/fifo", 403),
        ("/a.txt/", 404),
        ("/missing", 404),
        ("/dir", 301),
        ("/dir/", 200),
        ("/dir/deeper/", 404), // no index.html
        ("/", 404),
    ] {
        assert_eq!(status(&root, path), want, "{path}");
    }
}
