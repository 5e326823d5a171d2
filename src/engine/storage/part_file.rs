//! The `.part` file beside the destination: positional writes, syncs, and the final publish.
//!
//! Connections write with `pwritev` at absolute offsets, so the order in which bytes arrive never
//! matters and re-writing a range after a crash rewrites the same bytes. Publishing checks the size
//! and the optional SHA-256, syncs the data, moves the file into place atomically (never over an
//! existing file unless asked to), and syncs the directory, so the destination only ever holds a
//! complete, verified file.
//!
//! A fresh download starts in an *anonymous* file (Linux `O_TMPFILE` in the destination's
//! directory): it has no name until it needs one. Most small files never do: they appear under
//! their destination name with one `linkat`, where a named part file costs a directory entry on
//! create and a remove-plus-insert on rename (and both take the directory's lock). A file gets its
//! `.part` name the moment its progress must outlive the process: before the journal first claims
//! its bytes, before a durable sync, and when a failed or stopped run keeps it for resuming. A
//! killed process leaves no trace of an anonymous file (the kernel frees it), and the journal never
//! claimed its bytes. Systems without `O_TMPFILE` (Apple platforms, some filesystems) use the named
//! file from the start.

use crate::engine::model::error::{Error, ErrorCode, Result};
use bytes::Bytes;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

pub use crate::engine::model::task::part_path;

/// Size of the file system holding the open file `file`, when it reports one. Asked of the
/// descriptor, not a path: an anonymous part file has none.
fn capacity(file: &File) -> Option<u64> {
    // SAFETY: `st` is plain data filled by the call on an open descriptor.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatvfs(file.as_raw_fd(), &mut st) } != 0 || st.f_blocks == 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast)]
    Some((st.f_blocks as u64).saturating_mul(st.f_frsize as u64))
}

/// An open part file.
#[derive(Debug)]
pub struct PartFile {
    file: File,
    path: PathBuf,
    /// No directory entry yet (an `O_TMPFILE` file).
    anonymous: AtomicBool,
    /// Serializes giving the file its name.
    naming: Mutex<()>,
    /// The directory entry is known to be on disk (synced once by [`PartFile::sync_durably`]).
    name_synced: AtomicBool,
    /// `st_dev` of the open file, once read (it never changes for an open descriptor).
    device: std::sync::OnceLock<u64>,
}

impl PartFile {
    fn new(file: File, path: &Path, anonymous: bool) -> PartFile {
        PartFile {
            file,
            path: path.to_path_buf(),
            anonymous: AtomicBool::new(anonymous),
            naming: Mutex::new(()),
            name_synced: AtomicBool::new(false),
            device: std::sync::OnceLock::new(),
        }
    }

    /// Creates (or truncates) the named part file.
    pub fn create(path: &Path) -> Result<PartFile> {
        let _dir = super::dir_lock::lock_parent_of(path);
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| Error::io("creating the part file", &e))?;
        Ok(PartFile::new(file, path, false))
    }

    /// Starts a download from zero: an anonymous file in `path`'s directory where the system has
    /// them, else the named part file. A stale part file at `path` (`stale_possible`: an earlier
    /// run may have left one) is removed either way (its bytes are no longer trusted).
    pub fn create_fresh(path: &Path, stale_possible: bool) -> Result<PartFile> {
        match open_anonymous(path) {
            Some(file) => {
                match stale_possible.then(|| std::fs::remove_file(path)) {
                    None | Some(Ok(())) => {}
                    Some(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Some(Err(e)) => return Err(Error::io("removing a stale part file", &e)),
                }
                Ok(PartFile::new(file, path, true))
            }
            None => PartFile::create(path),
        }
    }

    /// Opens an existing part file for resuming; `None` if it is gone.
    pub fn open_existing(path: &Path) -> Result<Option<PartFile>> {
        match File::options().read(true).write(true).open(path) {
            Ok(file) => Ok(Some(PartFile::new(file, path, false))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("opening the part file", &e)),
        }
    }

    /// Whether the file has no directory entry yet.
    pub fn is_anonymous(&self) -> bool {
        self.anonymous.load(Ordering::Acquire)
    }

    /// Gives an anonymous file its `.part` name, so its bytes outlive the process. Call before
    /// anything (the journal, a durable offset, a kept partial) vouches for them. Replaces whatever
    /// else sits at that path. A no-op for a named file.
    pub fn ensure_named(&self) -> Result<()> {
        if !self.is_anonymous() {
            return Ok(());
        }
        let _naming = self.naming.lock();
        if !self.is_anonymous() {
            return Ok(());
        }
        let _dir = super::dir_lock::lock_parent_of(&self.path);
        let mut result = link_anonymous(&self.file, &self.path);
        if matches!(&result, Err(e) if e.raw_os_error() == Some(libc::EEXIST)) {
            let _ = std::fs::remove_file(&self.path);
            result = link_anonymous(&self.file, &self.path);
        }
        result.map_err(|e| Error::io("naming the part file", &e))?;
        self.anonymous.store(false, Ordering::Release);
        Ok(())
    }

    /// Moves the verified file to `destination` atomically: one `linkat` for an anonymous file, a
    /// rename for a named one. Never replaces an existing file unless `overwrite`.
    ///
    /// Returns whether the file got its first name here. Its inode then changed (its link count)
    /// after any data sync, and a directory sync does not write it on every file system (ext4
    /// without a journal keeps it dirty, and after a power loss the name would lead to an inode
    /// recorded as deleted): make it durable with [`PartFile::sync_inode`] or a `syncfs`.
    pub fn place(&self, destination: &Path, overwrite: bool) -> Result<bool> {
        let first_name = self.is_anonymous();
        if first_name && !overwrite {
            let _naming = self.naming.lock();
            if self.is_anonymous() {
                let _dir = super::dir_lock::lock_parent_of(destination);
                return match link_anonymous(&self.file, destination) {
                    Ok(()) => {
                        self.anonymous.store(false, Ordering::Release);
                        Ok(true)
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Err(destination_exists(destination)),
                    Err(e) => Err(Error::io("moving the file into place", &e)),
                };
            }
        }
        self.ensure_named()?;
        rename_into_place(&self.path, destination, overwrite)?;
        Ok(first_name)
    }

    /// Writes the file's inode (`fsync`): after it got its first name, so that the name never
    /// outlives the link count on disk.
    pub fn sync_inode(&self) -> Result<()> {
        self.file.sync_all().map_err(|e| Error::io("syncing the file", &e))
    }

    /// Removes the named part file (nothing to do for an anonymous one: it vanishes when closed).
    pub fn discard(&self) {
        if !self.is_anonymous() {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open file.
    pub fn file_descriptor(&self) -> &File {
        &self.file
    }

    /// Which file this is, and its length.
    pub fn identity(&self) -> Result<Identity> {
        use std::os::unix::fs::MetadataExt;
        let m = self.file.metadata().map_err(|e| Error::io("reading the part file", &e))?;
        let _ = self.device.set(m.dev());
        Ok(Identity::of(&m))
    }

    /// The device (`st_dev`) of the file's file system.
    pub fn device(&self) -> Result<u64> {
        use std::os::unix::fs::MetadataExt;
        if let Some(d) = self.device.get() {
            return Ok(*d);
        }
        let m = self.file.metadata().map_err(|e| Error::io("reading the part file", &e))?;
        Ok(*self.device.get_or_init(|| m.dev()))
    }

    /// Fails with `disk_full` when `needed` more bytes cannot fit on the part file's file system
    /// even if it were emptied: an absurd length fails at once instead of after filling the disk.
    /// A length that merely exceeds the free space proceeds, and fails with `disk_full` when the
    /// space runs out, keeping the partial for a resume once space is freed. File systems that
    /// report no size (some FUSE and network mounts) are not checked.
    /// Up to 1 MiB is not checked: a write that does not fit fails with `disk_full` about as soon
    /// as the check would, and a batch of small files saves one `fstatvfs` each.
    pub fn ensure_room(&self, needed: u64) -> Result<()> {
        if needed <= 1 << 20 {
            return Ok(());
        }
        let Some(capacity) = capacity(&self.file) else { return Ok(()) };
        if needed > capacity {
            return Err(Error::new(
                ErrorCode::DiskFull,
                format!("the download needs {needed} more bytes, the destination's file system holds {capacity} in all"),
            ));
        }
        Ok(())
    }

    /// Truncates to zero (a restart from scratch).
    pub fn truncate(&self) -> Result<()> {
        self.file.set_len(0).map_err(|e| Error::io("truncating the part file", &e))
    }

    /// Writes `bufs` contiguously starting at `offset`, all or error.
    pub fn write_vectored_at(&self, mut offset: u64, bufs: &[Bytes]) -> Result<()> {
        let mut slices: Vec<&[u8]> = bufs.iter().map(|b| b.as_ref()).filter(|b| !b.is_empty()).collect();
        while !slices.is_empty() {
            let n = pwritev(&self.file, &slices, offset).map_err(|e| Error::io("writing the part file", &e))?;
            if n == 0 {
                return Err(Error::new(ErrorCode::StorageIo, "writing the part file: wrote nothing"));
            }
            offset += n as u64;
            let mut left = n;
            while left > 0 {
                if left >= slices[0].len() {
                    left -= slices[0].len();
                    slices.remove(0);
                } else {
                    slices[0] = &slices[0][left..];
                    left = 0;
                }
            }
        }
        Ok(())
    }

    /// Writes one buffer at `offset`.
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.file.write_all_at(data, offset).map_err(|e| Error::io("writing the part file", &e))
    }

    /// Makes the part file survive a power loss as a resumable file: its data, and (once) the
    /// directory entry that names it. Durable offsets are recorded only after this, so after a
    /// reboot a journal never vouches for bytes in a file whose name did not reach the disk.
    pub fn sync_durably(&self) -> Result<()> {
        self.ensure_named()?;
        if self.name_synced.load(Ordering::Acquire) {
            return self.sync();
        }
        // The first time, the inode too: naming it changed its link count, which `fdatasync` need
        // not write.
        self.sync_inode()?;
        sync_dir(self.path.parent().unwrap_or(Path::new("/")));
        self.name_synced.store(true, Ordering::Release);
        Ok(())
    }

    /// Makes everything written so far durable.
    pub fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(|e| Error::io("syncing the part file", &e))
    }

    /// Asks the kernel to start writing `[offset, offset+len)` back now, without waiting, so the
    /// final sync has little left to do. A hint only; errors are ignored.
    pub fn start_writeback(&self, offset: u64, len: u64) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        // SAFETY: plain syscall on an open descriptor; invalid ranges only produce an error code.
        unsafe {
            libc::sync_file_range(self.file.as_raw_fd(), offset as i64, len as i64, libc::SYNC_FILE_RANGE_WRITE);
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let _ = (offset, len);
    }

    /// Lets the clean pages of `[offset, offset+len)` leave the page cache (dirty ones and those
    /// still being written back stay). A hint only; errors are ignored.
    pub fn drop_cached(&self, offset: u64, len: u64) {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        // SAFETY: plain syscall on an open descriptor; invalid ranges only produce an error code.
        unsafe {
            libc::posix_fadvise(self.file.as_raw_fd(), offset as libc::off_t, len as libc::off_t, libc::POSIX_FADV_DONTNEED);
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let _ = (offset, len);
    }

    /// SHA-256 of `[from, to)`, continuing `hasher`.
    pub fn hash_range(&self, mut hasher: Sha256, from: u64, to: u64) -> Result<String> {
        let mut buf = vec![0u8; 1 << 20];
        let mut at = from;
        let mut reader = &self.file;
        use std::io::Seek;
        reader.seek(std::io::SeekFrom::Start(from)).map_err(|e| Error::io("reading the part file", &e))?;
        while at < to {
            let want = ((to - at) as usize).min(buf.len());
            let n = reader.read(&mut buf[..want]).map_err(|e| Error::io("reading the part file", &e))?;
            if n == 0 {
                return Err(Error::new(ErrorCode::SizeMismatch, "part file is shorter than the download"));
            }
            hasher.update(&buf[..n]);
            at += n as u64;
        }
        Ok(hex::encode(hasher.finalize()))
    }
}

/// What tells one file from any other on this machine: device, inode and birth time (a rename
/// keeps all three; a file created in its place gets a new birth time even when the filesystem
/// hands out the freed inode number again), plus its length and modification time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// `dev:ino:birth` (birth in nanoseconds since the epoch, 0 where the filesystem keeps none).
    pub file: String,
    /// Length in bytes.
    pub len: u64,
    /// Modification time, nanoseconds since the epoch.
    pub modified: u128,
}

impl Identity {
    /// The identity of the file `m` describes.
    pub fn of(m: &std::fs::Metadata) -> Identity {
        use std::os::unix::fs::MetadataExt;
        let nanos = |t: std::io::Result<std::time::SystemTime>| {
            t.ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_nanos()).unwrap_or(0)
        };
        // Written out by hand: `format!` of a u128 cost 1,700 instructions, twice per download.
        let mut n = itoa::Buffer::new();
        let mut file = String::with_capacity(64);
        file.push_str(n.format(m.dev()));
        file.push(':');
        file.push_str(n.format(m.ino()));
        file.push(':');
        file.push_str(n.format(nanos(m.created())));
        Identity { file, len: m.len(), modified: nanos(m.modified()) }
    }

    /// `<file>@<len>:<modified>`: the mark a task carries while its verified file is renamed into
    /// place. Nothing writes the file after the mark is taken, so the destination matches it
    /// exactly when it is that file.
    pub fn publish_mark(&self) -> String {
        let mut n = itoa::Buffer::new();
        let mut mark = String::with_capacity(self.file.len() + 64);
        mark.push_str(&self.file);
        mark.push('@');
        mark.push_str(n.format(self.len));
        mark.push(':');
        mark.push_str(n.format(self.modified));
        mark
    }

    /// The file identity (`dev:ino:birth`) a stored value names, be it a plain identity or a
    /// publish mark.
    pub fn file_part(stored: &str) -> &str {
        stored.split('@').next().unwrap_or_default()
    }
}

/// The identity of the regular file at `path` (not following a symlink), if there is one.
pub fn identity_of(path: &Path) -> Option<Identity> {
    let m = std::fs::symlink_metadata(path).ok()?;
    m.is_file().then(|| Identity::of(&m))
}

fn pwritev(file: &File, slices: &[&[u8]], offset: u64) -> std::io::Result<usize> {
    const MAX_IOV: usize = 512;
    let iov: Vec<libc::iovec> =
        slices.iter().take(MAX_IOV).map(|s| libc::iovec { iov_base: s.as_ptr() as *mut libc::c_void, iov_len: s.len() }).collect();
    loop {
        // SAFETY: every iovec points into a live slice borrowed for the duration of the call.
        let n = unsafe { libc::pwritev(file.as_raw_fd(), iov.as_ptr(), iov.len() as libc::c_int, offset as libc::off_t) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

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
    super::crash::point("publish:synced");
    marked()?;
    super::crash::point("publish:marked");
    let first_name = part.place(destination, overwrite)?;
    super::crash::point("publish:renamed");
    if first_name {
        // Best effort, like the directory sync: the file is in place either way.
        let _ = part.sync_inode();
    }
    sync_dir(destination.parent().unwrap_or(Path::new("/")));
    super::crash::point("publish:dir-synced");
    Ok(())
}

/// Renames atomically; refuses to replace an existing file unless `overwrite`.
pub fn rename_into_place(from: &Path, to: &Path, overwrite: bool) -> Result<()> {
    let _dir = super::dir_lock::lock_parent_of(to);
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

/// An `O_TMPFILE` file in `path`'s directory, or `None` where the system has none.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn open_anonymous(path: &Path) -> Option<File> {
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
fn open_anonymous(_path: &Path) -> Option<File> {
    None
}

/// Whether linking a descriptor itself (`AT_EMPTY_PATH`) was refused: it needs CAP_DAC_READ_SEARCH,
/// or on recent kernels the opener's credentials. Then only the `/proc/self/fd` path is tried.
#[cfg(any(target_os = "linux", target_os = "android"))]
static EMPTY_PATH_REFUSED: AtomicBool = AtomicBool::new(false);

/// Links an anonymous file at `to`; fails with `EEXIST` if something is there. The descriptor is
/// linked directly where that is allowed (no `/proc` path to resolve: a third of the call's cost).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn link_anonymous(file: &File, to: &Path) -> std::io::Result<()> {
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
fn link_anonymous(_file: &File, _to: &Path) -> std::io::Result<()> {
    Err(std::io::Error::from_raw_os_error(libc::ENOTSUP))
}

fn destination_exists(to: &Path) -> Error {
    Error::new(ErrorCode::DestinationExists, format!("'{}' appeared while downloading; not replaced", to.display()))
}

/// Syncs a directory so a rename in it is durable (shared with concurrent publishes). Best effort.
pub fn sync_dir(dir: &Path) {
    super::dir_sync::global().sync(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn anonymous_files_are_linked_through_proc_when_the_descriptor_cannot_be() {
        let dir = tempfile::tempdir().unwrap();
        let refused = EMPTY_PATH_REFUSED.swap(true, Ordering::Relaxed);
        let dest = dir.path().join("via-proc.bin");
        let f = PartFile::create_fresh(&part_path(&dest), false).unwrap();
        assert!(f.is_anonymous(), "this test needs O_TMPFILE");
        f.write_at(0, b"through /proc").unwrap();
        f.place(&dest, false).unwrap();
        EMPTY_PATH_REFUSED.store(refused, Ordering::Relaxed);
        assert_eq!(std::fs::read(&dest).unwrap(), b"through /proc");
        let again = PartFile::create_fresh(&part_path(&dest), false).unwrap();
        assert_eq!(again.place(&dest, false).unwrap_err().code(), ErrorCode::DestinationExists);
    }

    #[test]
    fn part_paths_name_the_file_beside_the_destination() {
        for (dest, part) in [
            ("/d/f.bin", "/d/f.bin.part"),
            ("/d//f", "/d/f.part"),
            ("/d/f/", "/d/f.part"),
            ("/d/f/.", "/d/f.part"),
            ("f", "f.part"),
            ("/d/.hidden", "/d/.hidden.part"),
        ] {
            assert_eq!(part_path(Path::new(dest)), Path::new(part), "{dest}");
        }
    }

    #[test]
    fn vectored_writes_land_at_their_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.part");
        let f = PartFile::create(&p).unwrap();
        f.write_vectored_at(5, &[Bytes::from_static(b"fgh"), Bytes::new(), Bytes::from_static(b"ij")]).unwrap();
        f.write_vectored_at(0, &[Bytes::from_static(b"abcde")]).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"abcdefghij");
    }

    #[test]
    fn publish_verifies_then_renames_without_clobbering() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("out.bin");
        let part = part_path(&dest);
        assert_eq!(part.file_name().unwrap(), "out.bin.part");
        let f = PartFile::create(&part).unwrap();
        f.write_at(0, b"hello").unwrap();
        let sum = hex::encode(Sha256::digest(b"hello"));
        let wrong = "0".repeat(64);
        let e = publish(&f, Publish { destination: &dest, expected_size: Some(5), sha256: Some(&wrong), hashed: None, overwrite: false })
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::ChecksumMismatch);
        assert!(!dest.exists() && !part.exists());

        let f = PartFile::create(&part).unwrap();
        f.write_at(0, b"hello").unwrap();
        let mut h = Sha256::new();
        h.update(b"he");
        std::fs::write(&dest, b"other").unwrap();
        let e = publish(
            &f,
            Publish { destination: &dest, expected_size: Some(5), sha256: Some(&sum), hashed: Some((h.clone(), 2)), overwrite: false },
        )
        .unwrap_err();
        assert_eq!(e.code(), ErrorCode::DestinationExists);
        assert_eq!(std::fs::read(&dest).unwrap(), b"other");
        let f = PartFile::open_existing(&part).unwrap().unwrap();
        publish(&f, Publish { destination: &dest, expected_size: Some(5), sha256: Some(&sum), hashed: Some((h, 2)), overwrite: true })
            .unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello");
        assert!(!part.exists());
    }

    #[test]
    fn an_anonymous_part_file_gets_a_name_only_when_it_must() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("small.bin");
        let part = part_path(&dest);
        std::fs::write(&part, b"stale bytes of an earlier run").unwrap();
        let f = PartFile::create_fresh(&part, true).unwrap();
        if !f.is_anonymous() {
            eprintln!("no O_TMPFILE here; the named part file is used");
            return;
        }
        assert!(!part.exists(), "the stale part file is gone");
        f.write_at(0, b"hello").unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing is visible while anonymous");
        f.place(&dest, false).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello");
        assert!(!part.exists());

        // Named for resuming, then placed by rename.
        let dest2 = dir.path().join("big.bin");
        let f = PartFile::create_fresh(&part_path(&dest2), true).unwrap();
        f.write_at(0, b"resumable").unwrap();
        f.ensure_named().unwrap();
        f.ensure_named().unwrap();
        assert!(!f.is_anonymous());
        assert_eq!(std::fs::read(part_path(&dest2)).unwrap(), b"resumable");
        f.write_at(9, b"!").unwrap();
        f.sync_durably().unwrap();
        f.place(&dest2, false).unwrap();
        assert_eq!(std::fs::read(&dest2).unwrap(), b"resumable!");
        assert!(!part_path(&dest2).exists());
    }

    #[test]
    fn a_durable_sync_names_an_anonymous_file_first() {
        let dir = tempfile::tempdir().unwrap();
        let part = part_path(&dir.path().join("d.bin"));
        let f = PartFile::create_fresh(&part, true).unwrap();
        f.write_at(0, b"kept").unwrap();
        f.sync_durably().unwrap();
        assert!(!f.is_anonymous());
        assert_eq!(std::fs::read(&part).unwrap(), b"kept");
    }

    #[test]
    fn an_anonymous_file_never_replaces_a_destination_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("taken.bin");
        std::fs::write(&dest, b"someone else's").unwrap();
        let f = PartFile::create_fresh(&part_path(&dest), true).unwrap();
        f.write_at(0, b"ours").unwrap();
        assert_eq!(f.place(&dest, false).unwrap_err().code(), ErrorCode::DestinationExists);
        assert_eq!(std::fs::read(&dest).unwrap(), b"someone else's");
        f.place(&dest, true).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"ours");
        assert!(!part_path(&dest).exists());
    }

    #[test]
    fn size_mismatch_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("o");
        let f = PartFile::create(&part_path(&dest)).unwrap();
        f.write_at(0, b"abc").unwrap();
        let e =
            publish(&f, Publish { destination: &dest, expected_size: Some(4), sha256: None, hashed: None, overwrite: false }).unwrap_err();
        assert_eq!(e.code(), ErrorCode::SizeMismatch);
        assert!(!dest.exists());
    }
}
