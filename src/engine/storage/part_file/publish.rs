//! Publishing: verify size and checksum, sync, and move the file into place atomically.

use super::*;

/// What publishing needs to know.
#[derive(Debug)]
pub struct Publish<'a> {
    /// Final path.
    pub destination: &'a Path,
    /// Expected size, when known.
    pub expected_size: Option<u64>,
    /// Expected SHA-256 (lower-case hex).
    pub sha256: Option<&'a str>,
    /// Hash state covering `[0, hashed_to)` already, computed while streaming.
    pub hashed: Option<(Sha256, u64)>,
    /// Replace an existing destination.
    pub overwrite: bool,
}

/// Verifies the part file and moves it into place. On a checksum or size mismatch the part file is
/// deleted (its bytes are wrong); on other errors it is kept for a later attempt.
pub fn publish(part: &PartFile, p: Publish<'_>) -> Result<u64> {
    let len = verify(part, &p)?.len;
    commit(part, p.destination, p.overwrite, || Ok(()))?;
    Ok(len)
}

/// Checks the size and the optional SHA-256; returns the file's identity (and so its length).
/// Deletes the part file on a mismatch.
pub fn verify(part: &PartFile, p: &Publish<'_>) -> Result<Identity> {
    let identity = part.identity()?;
    let len = identity.len;
    if let Some(expected) = p.expected_size {
        if len != expected {
            part.discard();
            return Err(Error::new(ErrorCode::SizeMismatch, format!("downloaded {len} bytes but the server announced {expected}")));
        }
    }
    if let Some(want) = p.sha256 {
        let (hasher, from) = p.hashed.clone().unwrap_or_else(|| (Sha256::new(), 0));
        let got = part.hash_range(hasher, from, len)?;
        if got != want {
            part.discard();
            return Err(Error::new(ErrorCode::ChecksumMismatch, format!("SHA-256 is {got}, expected {want}")));
        }
    }
    Ok(identity)
}

/// Makes a verified part file durable and moves it into place: sync, `marked` (the caller records
/// the file's identity in the task table), rename, sync the directory.
pub fn commit(part: &PartFile, destination: &Path, overwrite: bool, marked: impl FnOnce() -> Result<()>) -> Result<()> {
    part.sync()?;
    super::super::crash::point("publish:synced");
    marked()?;
    super::super::crash::point("publish:marked");
    let first_name = part.place(destination, overwrite)?;
    super::super::crash::point("publish:renamed");
    if first_name {
        // Best effort, like the directory sync: the file is in place either way.
        let _ = part.sync_inode();
    }
    sync_dir(destination.parent().unwrap_or(Path::new("/")));
    super::super::crash::point("publish:dir-synced");
    Ok(())
}

/// Renames atomically; refuses to replace an existing file unless `overwrite`.
pub fn rename_into_place(from: &Path, to: &Path, overwrite: bool) -> Result<()> {
    let _dir = super::super::dir_lock::lock_parent_of(to);
    if overwrite {
        return std::fs::rename(from, to).map_err(|e| Error::io("moving the file into place", &e));
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use std::os::unix::ffi::OsStrExt;
        let a = std::ffi::CString::new(from.as_os_str().as_bytes()).map_err(|_| Error::internal("NUL in path"))?;
        let b = std::ffi::CString::new(to.as_os_str().as_bytes()).map_err(|_| Error::internal("NUL in path"))?;
        // SAFETY: both are valid NUL-terminated paths; AT_FDCWD resolves them like rename(2).
        let rc =
            unsafe { libc::syscall(libc::SYS_renameat2, libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_NOREPLACE) };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EEXIST) => return Err(destination_exists(to)),
            // Filesystems without RENAME_NOREPLACE: fall through to check-then-rename.
            Some(libc::EINVAL) | Some(libc::ENOSYS) => {}
            _ => return Err(Error::io("moving the file into place", &err)),
        }
    }
    if to.exists() {
        return Err(destination_exists(to));
    }
    std::fs::rename(from, to).map_err(|e| Error::io("moving the file into place", &e))
}

pub(super) fn destination_exists(to: &Path) -> Error {
    Error::new(ErrorCode::DestinationExists, format!("'{}' appeared while downloading; not replaced", to.display()))
}

/// Syncs a directory so a rename in it is durable (shared with concurrent publishes). Best effort.
pub fn sync_dir(dir: &Path) {
    super::super::dir_sync::global().sync(dir);
}
