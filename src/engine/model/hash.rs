//! Hash maps keyed by task ids, host names and paths.
//!
//! The engine looks such keys up about a dozen times per task (destination claims, the ready queue,
//! host slots, the task table). With std's SipHash a task id costs about 230 instructions to hash
//! and a path, hashed component by component, about 700: 8 % of the work of a batch of small
//! files. foldhash is several times cheaper and still seeded per process, so keys an app or a
//! server chooses cannot be aimed at one bucket.
//!
//! Paths are keyed by their bytes ([`path_key`]): std hashes a path component by component, which
//! still cost about 450 instructions a hash with foldhash, and a batch hashes each destination six
//! times or more.

/// A hash map with the engine's hasher.
pub type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// A hash set with the engine's hasher.
pub type Set<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// `path` as a map key: its bytes, spelled the one way [`Path`]'s own equality would not tell apart
/// from any other (`/a//b/./c` and `/a/b/c` are one key). Borrowed unless the path has a doubled
/// separator, a `.` component after the first or a trailing separator.
pub fn path_key(path: &std::path::Path) -> std::borrow::Cow<'_, std::ffi::OsStr> {
    use std::os::unix::ffi::OsStrExt;
    if spelled_oddly(path.as_os_str().as_bytes()) {
        std::borrow::Cow::Owned(path.components().collect::<std::path::PathBuf>().into_os_string())
    } else {
        std::borrow::Cow::Borrowed(path.as_os_str())
    }
}

/// A destination as a claim key: [`path_key`] of the path with its directory resolved (symlinks,
/// `..`), so that `/d/f`, `/d/sub/../f` and `/link-to-d/f` are one key. Borrowed when the directory
/// resolves to itself, or cannot be resolved.
pub fn claim_key(path: &std::path::Path) -> std::borrow::Cow<'_, std::ffi::OsStr> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else { return path_key(path) };
    match resolved_dir(dir) {
        Some(real) => std::borrow::Cow::Owned(path_key(&real.join(name)).into_owned()),
        None => path_key(path),
    }
}

/// `dir` resolved, when that differs from `dir`. Each directory is resolved once per process: a
/// batch puts thousands of destinations in one, and a claim must be released under the key it was
/// taken with even after its directory is gone.
fn resolved_dir(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    static RESOLVED: std::sync::OnceLock<parking_lot::Mutex<Map<std::ffi::OsString, Option<std::path::PathBuf>>>> =
        std::sync::OnceLock::new();
    let resolved = RESOLVED.get_or_init(Default::default);
    if let Some(known) = resolved.lock().get(dir.as_os_str()) {
        return known.clone();
    }
    let real = std::fs::canonicalize(dir).ok().filter(|real| real.as_path() != dir);
    resolved.lock().entry(dir.as_os_str().to_owned()).or_insert(real).clone()
}

/// Whether `b` has a doubled or trailing separator or a `.` component after the first.
fn spelled_oddly(b: &[u8]) -> bool {
    if b.len() > 1 && b[b.len() - 1] == b'/' {
        return true;
    }
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'/' {
            let next = b[i + 1];
            if next == b'/' || (next == b'.' && b.get(i + 2).is_none_or(|&c| c == b'/')) {
                return true;
            }
        }
        i += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::{claim_key, path_key};
    use std::path::Path;

    #[test]
    fn every_spelling_of_one_file_is_one_claim() {
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir(real.join("sub")).unwrap();
        std::os::unix::fs::symlink(&real, real.join("link")).unwrap();
        let want = claim_key(&real.join("f.bin")).into_owned();
        for alias in ["sub/../f.bin", "link/f.bin", "link/sub/../f.bin", "./f.bin"] {
            assert_eq!(claim_key(&real.join(alias)), want.as_os_str(), "{alias}");
        }
        assert_ne!(claim_key(&real.join("sub/f.bin")), want.as_os_str());
        assert_ne!(claim_key(&real.join("link")), claim_key(&real), "the last component is never followed");
    }

    #[test]
    fn paths_that_compare_equal_make_one_key() {
        let spellings = ["/a/b/c.bin", "/a//b/c.bin", "/a/./b/c.bin", "//a/b/./c.bin", "/a/b///c.bin"];
        for s in spellings {
            assert_eq!(Path::new(s), Path::new(spellings[0]), "{s}");
            assert_eq!(path_key(Path::new(s)), path_key(Path::new(spellings[0])), "{s}");
        }
        for (a, b) in [("a//b", "a/b"), ("/a/b/", "/a/b"), ("/a/b/.", "/a/b")] {
            assert_eq!(Path::new(a), Path::new(b));
            assert_eq!(path_key(Path::new(a)), path_key(Path::new(b)), "{a} {b}");
        }
        // Paths std tells apart stay apart.
        for (a, b) in [("/a/../b", "/b"), ("/a/b", "/a/B"), ("/a/b.bin", "/a/b.bin.part"), ("./a/b", "a/b"), ("/a/.b", "/a/b")] {
            assert_ne!(Path::new(a), Path::new(b));
            assert_ne!(path_key(Path::new(a)), path_key(Path::new(b)), "{a} {b}");
        }
        for plain in ["/home/u/f.bin", "/a/.hidden", "/a/..", "/", "/a/b..c"] {
            assert!(matches!(path_key(Path::new(plain)), std::borrow::Cow::Borrowed(_)), "{plain}");
        }
    }
}
