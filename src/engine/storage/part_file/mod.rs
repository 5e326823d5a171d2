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

mod anonymous;
mod identity;
mod publish;
#[cfg(test)]
mod tests;

use anonymous::{link_anonymous, open_anonymous};
pub use identity::{identity_of, Identity};
use publish::destination_exists;
pub use publish::{commit, publish, rename_into_place, sync_dir, verify, Publish};

/// Size and free space of a file system.
struct Space {
    capacity: u64,
    free: u64,
}

/// The space of the file system holding the open file `file`, when it reports one. Asked of the
/// descriptor, not a path: an anonymous part file has none.
fn space(file: &File) -> Option<Space> {
    // SAFETY: `st` is plain data filled by the call on an open descriptor.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatvfs(file.as_raw_fd(), &mut st) } != 0 || st.f_blocks == 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast)]
    let block = st.f_frsize as u64;
    #[allow(clippy::unnecessary_cast)]
    Some(Space { capacity: (st.f_blocks as u64).saturating_mul(block), free: (st.f_bavail as u64).saturating_mul(block) })
}

/// Reserves the blocks of `[0, total)` without changing the file's length.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn preallocate(file: &File, total: u64) -> std::io::Result<()> {
    // SAFETY: a plain system call on an open descriptor.
    let r = unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, total as libc::off_t) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Reserves room for `total` bytes past the file's end (APFS and HFS+ take the hint).
#[cfg(target_vendor = "apple")]
fn preallocate(file: &File, total: u64) -> std::io::Result<()> {
    let mut store = libc::fstore_t {
        fst_flags: libc::F_ALLOCATEALL,
        fst_posmode: libc::F_PEOFPOSMODE,
        fst_offset: 0,
        fst_length: total as libc::off_t,
        fst_bytesalloc: 0,
    };
    // SAFETY: `store` is plain data the call reads and fills, on an open descriptor.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_PREALLOCATE, &mut store) };
    if r == -1 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
fn preallocate(_file: &File, _total: u64) -> std::io::Result<()> {
    Ok(())
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
        // The rename moves whatever the name leads to: another writer (a manager of another state
        // directory, asked to overwrite) may have put its own unfinished file there.
        let here = identity_of(&self.path).map(|found| found.file);
        if here != Some(self.identity()?.file) {
            return Err(Error::new(
                ErrorCode::StorageIo,
                format!("'{}' is no longer this download's part file: another writer replaced it", self.path.display()),
            ));
        }
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

    /// Makes room for a download of `total` bytes of which `needed` are still to come, or fails at
    /// once with `disk_full` and the numbers: instead of after gigabytes, when the disk fills.
    ///
    /// - `needed` must fit the free space, keeping the last 1 % of the file system (at most
    ///   64 MiB) free for everything else: a phone filled to the last byte misbehaves.
    /// - Then the part file's blocks are reserved (`fallocate` with `FALLOC_FL_KEEP_SIZE` on Linux
    ///   and Android, `F_PREALLOCATE` on Apple platforms; the length stays what was written), so
    ///   another writer filling the disk meanwhile fails instead of this download at 95 %.
    ///   File systems that cannot reserve are not reserved on; a file-size limit (`EFBIG`) is left
    ///   to the writes, which keep the partial for a resume.
    ///
    /// Up to 1 MiB is not checked: a write that does not fit fails with `disk_full` about as soon
    /// as the check would, and a batch of small files saves two system calls each. File systems
    /// that report no size (some FUSE and network mounts) are not checked.
    pub fn reserve(&self, total: u64, needed: u64) -> Result<()> {
        if needed <= 1 << 20 {
            return Ok(());
        }
        let Some(space) = space(&self.file) else { return Ok(()) };
        if needed > space.capacity {
            return Err(Error::new(
                ErrorCode::DiskFull,
                format!("the download needs {needed} more bytes, the destination's file system holds {} in all", space.capacity),
            ));
        }
        let keep = (space.capacity / 100).min(64 << 20);
        if needed.saturating_add(keep) > space.free {
            return Err(Error::new(
                ErrorCode::DiskFull,
                format!(
                    "the download needs {needed} more bytes, the destination's file system has {} free (and keeps {keep} free)",
                    space.free
                ),
            ));
        }
        match preallocate(&self.file, total) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)) => {
                Err(Error::new(ErrorCode::DiskFull, format!("reserving {total} bytes for the download failed: {e} ({} free)", space.free)))
            }
            _ => Ok(()),
        }
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
