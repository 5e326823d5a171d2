//! Anonymous part files (`O_TMPFILE`) and linking them under a name.

use super::*;

/// An `O_TMPFILE` file in `path`'s directory, or `None` where the system has none.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) fn open_anonymous(path: &Path) -> Option<File> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::io::FromRawFd;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: a valid NUL-terminated path; the returned descriptor is owned by the File.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC, 0o666 as libc::c_uint) };
    // SAFETY: fd is a fresh descriptor nobody else owns.
    (fd >= 0).then(|| unsafe { File::from_raw_fd(fd) })
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(super) fn open_anonymous(_path: &Path) -> Option<File> {
    None
}

/// Whether linking a descriptor itself (`AT_EMPTY_PATH`) was refused: it needs CAP_DAC_READ_SEARCH,
/// or on recent kernels the opener's credentials. Then only the `/proc/self/fd` path is tried.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) static EMPTY_PATH_REFUSED: AtomicBool = AtomicBool::new(false);

/// Links an anonymous file at `to`; fails with `EEXIST` if something is there. The descriptor is
/// linked directly where that is allowed (no `/proc` path to resolve: a third of the call's cost).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) fn link_anonymous(file: &File, to: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let to = std::ffi::CString::new(to.as_os_str().as_bytes()).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let tried_empty = !EMPTY_PATH_REFUSED.load(Ordering::Relaxed);
    if tried_empty {
        // SAFETY: valid NUL-terminated paths; AT_EMPTY_PATH links the descriptor's own inode,
        // without resolving a /proc path first.
        let rc = unsafe { libc::linkat(file.as_raw_fd(), c"".as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::AT_EMPTY_PATH) };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if !matches!(err.raw_os_error(), Some(libc::ENOENT | libc::EPERM | libc::EINVAL)) {
            return Err(err);
        }
    }
    let proc_path = std::ffi::CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).expect("no NUL");
    // SAFETY: valid NUL-terminated paths. Following the /proc link names the open file itself.
    let rc = unsafe { libc::linkat(libc::AT_FDCWD, proc_path.as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::AT_SYMLINK_FOLLOW) };
    if rc == 0 {
        if tried_empty {
            EMPTY_PATH_REFUSED.store(true, Ordering::Relaxed);
        }
        return Ok(());
    }
    Err(std::io::Error::last_os_error())
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(super) fn link_anonymous(_file: &File, _to: &Path) -> std::io::Result<()> {
    Err(std::io::Error::from_raw_os_error(libc::ENOTSUP))
}
