//! Named roots: the directories an app declares when it opens the manager (its Documents and
//! Caches, an App Group container), so that the task table stores destinations relative to them.
//!
//! On iOS an app's container moves after an update or a restore: an absolute path stored in the
//! table would then name nothing, and a task would report a completed file that is not there or
//! start from zero. A destination under a root is stored as `@<name>/<relative path>` and resolved
//! against the roots of each open; its part file (`<destination>.part`) moves with it. Anything
//! else is stored absolute, as before, and rows written before roots existed stay absolute.
//!
//! A stored `@name/...` whose root this open does not declare cannot be resolved: it is never read
//! as a path (see [`Roots::resolve`], `root_unknown`).

use super::error::{Error, ErrorCode, Result};
use super::hash::path_key;
use std::path::{Component, Path, PathBuf};

/// Longest root name.
const MAX_NAME: usize = 64;

/// One declared root.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Root {
    name: String,
    /// The path as declared (absolute, spelled as [`path_key`] spells it): what resolved
    /// destinations start with, so that they read as the app built them.
    declared: PathBuf,
    /// The same directory with every symlink resolved (`/var` is `/private/var` on Apple
    /// platforms): a destination spelled either way is under the root.
    canonical: PathBuf,
}

/// The roots of one open. Empty by default: every destination is stored absolute.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Roots {
    roots: Vec<Root>,
}

/// Whether `name` may name a root: 1–64 bytes of ASCII letters, digits, `_`, `-` and `.`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn invalid(message: String) -> Error {
    Error::new(ErrorCode::InvalidConfig, message)
}

impl Roots {
    /// Checks the declared roots (names unique and valid, paths absolute, existing directories, no
    /// directory declared twice) and resolves their symlinks. `invalid_config` otherwise.
    pub fn new(declared: &[(String, PathBuf)]) -> Result<Roots> {
        let mut roots: Vec<Root> = Vec::with_capacity(declared.len());
        for (name, path) in declared {
            if !valid_name(name) {
                return Err(invalid(format!(
                    "root name '{}' must be 1 to {MAX_NAME} ASCII letters, digits, '_', '-' or '.'",
                    name.escape_debug()
                )));
            }
            if roots.iter().any(|r| &r.name == name) {
                return Err(invalid(format!("root '{name}' is declared twice")));
            }
            if !path.is_absolute() {
                return Err(invalid(format!("root '{name}' must be an absolute path, got '{}'", path.display())));
            }
            let canonical = match std::fs::canonicalize(path) {
                Ok(p) if p.is_dir() => p,
                Ok(_) => return Err(invalid(format!("root '{name}' ('{}') is not a directory", path.display()))),
                Err(e) => return Err(invalid(format!("root '{name}' ('{}') cannot be opened: {e}", path.display()))),
            };
            if let Some(other) = roots.iter().find(|r| r.canonical == canonical) {
                return Err(invalid(format!("roots '{}' and '{name}' are one directory", other.name)));
            }
            let declared = PathBuf::from(path_key(path).into_owned());
            roots.push(Root { name: name.clone(), declared, canonical });
        }
        Ok(Roots { roots })
    }

    /// Whether no root is declared.
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// The declared roots, as `(name, path as declared)`.
    pub fn declared(&self) -> impl Iterator<Item = (&str, &Path)> {
        self.roots.iter().map(|r| (r.name.as_str(), r.declared.as_path()))
    }

    /// The root `dest` is under (the deepest one, when roots nest), and the rest of its path.
    /// Compared on path components (`/a/bc` is not under `/a/b`), in the root's declared spelling
    /// and with its symlinks resolved; a rest that climbs out (`..`) is not under it.
    fn locate(&self, dest: &Path) -> Option<(&Root, PathBuf)> {
        let mut best: Option<(&Root, PathBuf, usize)> = None;
        for root in &self.roots {
            for base in [&root.declared, &root.canonical] {
                let Ok(rest) = dest.strip_prefix(base) else { continue };
                let plain = rest.components().all(|c| matches!(c, Component::Normal(_)));
                if !plain || rest.as_os_str().is_empty() {
                    continue;
                }
                let depth = base.components().count();
                if best.as_ref().is_none_or(|(_, _, d)| depth > *d) {
                    best = Some((root, rest.components().collect(), depth));
                }
            }
        }
        best.map(|(root, rest, _)| (root, rest))
    }

    /// How the table stores `dest`: `@<name>/<relative path>` under a root, else the absolute path.
    pub fn to_stored(&self, dest: &Path) -> String {
        match self.locate(dest) {
            Some((root, rest)) => format!("@{}/{}", root.name, rest.to_string_lossy()),
            None => dest.to_string_lossy().into_owned(),
        }
    }

    /// `dest` as it reads once stored and resolved again: under a root, the root's declared path
    /// joined with the rest (whichever spelling `dest` used); `None` when it is under none.
    pub fn normalize(&self, dest: &Path) -> Option<PathBuf> {
        self.locate(dest).map(|(root, rest)| root.declared.join(rest))
    }

    /// The path a stored destination names under these roots: an absolute one as it is, an
    /// `@name/...` one under root `name`. `root_unknown` when that root is not declared.
    pub fn resolve(&self, stored: &str) -> Result<PathBuf> {
        let Some(name) = root_of(stored) else { return Ok(PathBuf::from(stored)) };
        let rest = stored[1 + name.len()..].trim_start_matches('/');
        match self.roots.iter().find(|r| r.name == name) {
            Some(root) if !rest.is_empty() => Ok(root.declared.join(rest)),
            _ => Err(unknown_root(stored)),
        }
    }
}

/// The root a stored destination is relative to (`docs` for `@docs/a/b.bin`), if it is: any stored
/// text that starts with `@` (an absolute path starts with `/`).
pub fn root_of(stored: &str) -> Option<&str> {
    let rest = stored.strip_prefix('@')?;
    Some(rest.split_once('/').map_or(rest, |(name, _)| name))
}

/// The `root_unknown` error for a stored destination whose root is not declared.
pub fn unknown_root(stored: &str) -> Error {
    let name = root_of(stored).unwrap_or_default();
    Error::new(
        ErrorCode::RootUnknown,
        format!("'{stored}' is relative to root '{name}', which this manager does not declare: open it with that root to run the task"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots(dir: &Path, names: &[(&str, &str)]) -> Roots {
        let declared: Vec<(String, PathBuf)> = names.iter().map(|(n, p)| (n.to_string(), dir.join(p))).collect();
        for (_, p) in &declared {
            std::fs::create_dir_all(p).unwrap();
        }
        Roots::new(&declared).unwrap()
    }

    #[test]
    fn destinations_under_a_root_are_stored_relative_to_the_deepest_one() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        let r = roots(&base, &[("docs", "app/Documents"), ("group", "app"), ("caches", "app/Library/Caches")]);
        let cases = [
            ("app/Documents/a.bin", "@docs/a.bin"),
            ("app/Documents/sub/dir/b.bin", "@docs/sub/dir/b.bin"),
            ("app/Library/Caches/c.bin", "@caches/c.bin"),
            ("app/Library/other.bin", "@group/Library/other.bin"),
            ("app/x.bin", "@group/x.bin"),
        ];
        for (rel, stored) in cases {
            let dest = base.join(rel);
            assert_eq!(r.to_stored(&dest), stored, "{rel}");
            assert_eq!(r.resolve(stored).unwrap(), dest, "{rel}");
            assert_eq!(r.normalize(&dest), Some(dest.clone()));
        }
        // Spelled oddly, it is still under its root.
        let odd = PathBuf::from(format!("{}//app/./Documents//a.bin", base.display()));
        assert_eq!(r.to_stored(&odd), "@docs/a.bin");
        // Outside every root, or climbing out of one, or a sibling sharing a prefix: absolute.
        for rel in ["elsewhere/a.bin", "app/Documents/../../out.bin", "appendix/a.bin"] {
            let dest = base.join(rel);
            assert_eq!(r.to_stored(&dest), dest.to_string_lossy(), "{rel}");
            assert_eq!(r.resolve(&dest.to_string_lossy()).unwrap(), dest);
        }
        assert_eq!(r.to_stored(&base.join("app")), base.join("app").to_string_lossy(), "a root itself");
    }

    #[test]
    fn a_root_moved_elsewhere_resolves_there() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        let before = roots(&base, &[("docs", "one/Documents")]);
        let stored = before.to_stored(&base.join("one/Documents/f.bin"));
        let after = roots(&base, &[("docs", "two/Documents")]);
        assert_eq!(after.resolve(&stored).unwrap(), base.join("two/Documents/f.bin"));
        let err = Roots::default().resolve(&stored).unwrap_err();
        assert_eq!(err.code(), ErrorCode::RootUnknown);
        assert!(err.message().contains("'docs'"), "{err}");
        assert_eq!(roots(&base, &[("other", "two")]).resolve(&stored).unwrap_err().code(), ErrorCode::RootUnknown);
    }

    #[test]
    fn a_root_reached_through_a_symlink_matches_both_spellings() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(base.join("private/var/Documents")).unwrap();
        std::os::unix::fs::symlink(base.join("private/var"), base.join("var")).unwrap();
        let r = Roots::new(&[("docs".into(), base.join("var/Documents"))]).unwrap();
        for spelled in ["var/Documents/a.bin", "private/var/Documents/a.bin"] {
            assert_eq!(r.to_stored(&base.join(spelled)), "@docs/a.bin", "{spelled}");
            // Reported as the app declared it.
            assert_eq!(r.normalize(&base.join(spelled)), Some(base.join("var/Documents/a.bin")));
        }
    }

    #[test]
    fn bad_roots_are_invalid_config() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        std::fs::write(d.join("file"), b"").unwrap();
        let bad: Vec<Vec<(String, PathBuf)>> = vec![
            vec![("".into(), d.clone())],
            vec![("a/b".into(), d.clone())],
            vec![("x".repeat(65), d.clone())],
            vec![("a".into(), d.clone()), ("a".into(), d.join("file"))],
            vec![("a".into(), PathBuf::from("relative/dir"))],
            vec![("a".into(), d.join("missing"))],
            vec![("a".into(), d.join("file"))],
            vec![("a".into(), d.clone()), ("b".into(), d.join("."))],
        ];
        for roots in bad {
            assert_eq!(Roots::new(&roots).unwrap_err().code(), ErrorCode::InvalidConfig, "{roots:?}");
        }
        assert!(Roots::new(&[("group.com.example-app_1".into(), d)]).is_ok());
    }

    #[test]
    fn only_root_relative_text_names_a_root() {
        assert_eq!(root_of("@docs/a.bin"), Some("docs"));
        for s in ["/abs/a.bin", "docs/a", ""] {
            assert_eq!(root_of(s), None, "{s}");
        }
        // Text that starts with '@' is never read as a path, even when mangled.
        let dir = tempfile::tempdir().unwrap();
        let r = Roots::new(&[("docs".into(), dir.path().to_path_buf())]).unwrap();
        for s in ["@docs", "@docs/", "@", "@/x"] {
            assert_eq!(r.resolve(s).unwrap_err().code(), ErrorCode::RootUnknown, "{s}");
        }
    }
}
