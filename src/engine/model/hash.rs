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
    use super::path_key;
    use std::path::Path;

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
