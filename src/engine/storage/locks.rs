//! Byte-range locks that the kernel drops when their process dies: how processes sharing one state
//! directory tell who runs a task, and how many connections a host has across them.
//!
//! A [`LockFile`] is one file of the state directory (`owners`, `hosts`) opened once per process.
//! Each lock is one byte at an offset that means something to the caller (a task's sequence
//! number, a host's connection slot). A lock is held until it is released, the file is closed, or
//! the process ends in any way (SIGKILL included): nothing needs cleaning up after a crash.
//!
//! Two kinds of lock, decided when the file is opened:
//! - Open file description locks (`F_OFD_SETLK`, Linux 3.15+ and Android, 64-bit) where the kernel
//!   has them: they belong to the open file, so two opens conflict even in one process, which lets
//!   the open [probe](LockFile::probe) that the file system enforces them.
//! - Otherwise POSIX record locks (`F_SETLK`, Apple platforms): they belong to the process, and the
//!   kernel drops *all* of a process's locks on a file when *any* descriptor of that file is
//!   closed. So the file is opened exactly once per process (one [`LockFile`] per state directory
//!   and per file, kept for the manager's life) and never probed with a second descriptor.
//!
//! With either kind, locks taken through one [`LockFile`] never conflict with each other: callers
//! keep their own books of which offsets this process holds.
//!
//! A file system without working locks (an NFS mount without its lock daemon, some FUSE file
//! systems) answers with `ENOLCK`, `EOPNOTSUPP` or `ENOSYS`, or, seen by the probe, accepts locks
//! without enforcing them: both are [`ErrorCode::LocksUnavailable`], never a silent success.
//! Builds with the loopback test tooling read `FERRY_LOCKS`: `posix` forces POSIX locks, and
//! `unsupported` makes every lock fail as such a file system would.

use crate::engine::model::error::{Error, ErrorCode, Result};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[cfg(all(any(target_os = "linux", target_os = "android"), target_pointer_width = "64"))]
mod ofd {
    // From <asm-generic/fcntl.h>; the same on every Linux architecture. Bionic's headers lack them
    // in older NDKs, so they are spelled out here.
    pub const GETLK: libc::c_int = 36;
    pub const SETLK: libc::c_int = 37;
}

/// Which kind of lock a [`LockFile`] uses (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Open file description locks: per open file.
    OpenFile,
    /// POSIX record locks: per process.
    Process,
}

/// A file of one-byte locks (see the module docs).
#[derive(Debug)]
pub struct LockFile {
    file: File,
    kind: Kind,
    path: PathBuf,
}

/// What the test tooling asks for (`FERRY_LOCKS`; loopback builds only).
fn forced() -> Option<&'static str> {
    #[cfg(feature = "loopback")]
    {
        static FORCED: once_cell::sync::Lazy<Option<String>> = once_cell::sync::Lazy::new(|| std::env::var("FERRY_LOCKS").ok());
        FORCED.as_deref()
    }
    #[cfg(not(feature = "loopback"))]
    None
}

/// The error of a file system without working locks.
pub fn unavailable(path: &Path, why: &str) -> Error {
    Error::new(
        ErrorCode::LocksUnavailable,
        format!(
            "the file system of '{}' has no working file locks ({why}); processes sharing a state directory need them \
             to keep two of them from running one download: put the state directory on a local file system",
            path.display()
        ),
    )
}

fn is_unsupported(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOLCK) | Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS))
        || (libc::ENOTSUP != libc::EOPNOTSUPP && e.raw_os_error() == Some(libc::ENOTSUP))
}

impl LockFile {
    /// Opens (creating if needed) the lock file at `path`. Call once per process and file.
    pub fn open(path: &Path) -> Result<LockFile> {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::io(&format!("opening '{}'", path.display()), &e))?;
        Self::with(file, path)
    }

    /// An existing lock file opened for reading only: enough to ask whether a lock is held
    /// ([`LockFile::held_elsewhere`]), never to take one.
    pub fn open_to_look(path: &Path) -> Result<LockFile> {
        let file = File::open(path).map_err(|e| Error::io(&format!("opening '{}'", path.display()), &e))?;
        Self::with(file, path)
    }

    fn with(file: File, path: &Path) -> Result<LockFile> {
        let mut lf = LockFile { file, kind: Kind::Process, path: path.to_path_buf() };
        if forced() == Some("unsupported") {
            return Err(unavailable(path, "FERRY_LOCKS=unsupported"));
        }
        #[cfg(all(any(target_os = "linux", target_os = "android"), target_pointer_width = "64"))]
        if forced() != Some("posix") {
            // A kernel without open file description locks refuses the command with EINVAL.
            let mut probe = flock(0, libc::F_WRLCK as i16);
            // SAFETY: a valid descriptor and a valid, initialised `struct flock`.
            let r = unsafe { libc::fcntl(lf.file.as_raw_fd(), ofd::GETLK, &mut probe) };
            if r == 0 {
                lf.kind = Kind::OpenFile;
            }
        }
        Ok(lf)
    }

    /// The kind of lock in use.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn set(&self, offset: u64, kind: libc::c_int) -> std::io::Result<bool> {
        if forced() == Some("unsupported") {
            return Err(std::io::Error::from_raw_os_error(libc::ENOLCK));
        }
        let mut fl = flock(offset, kind as i16);
        let cmd = match self.kind {
            #[cfg(all(any(target_os = "linux", target_os = "android"), target_pointer_width = "64"))]
            Kind::OpenFile => ofd::SETLK,
            _ => libc::F_SETLK,
        };
        loop {
            // SAFETY: a valid descriptor and a valid, initialised `struct flock`.
            if unsafe { libc::fcntl(self.file.as_raw_fd(), cmd, &mut fl) } == 0 {
                return Ok(true);
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) | Some(libc::EACCES) => return Ok(false),
                _ => return Err(e),
            }
        }
    }

    fn fail(&self, e: std::io::Error) -> Error {
        if is_unsupported(&e) {
            unavailable(&self.path, &e.to_string())
        } else {
            Error::io(&format!("locking '{}'", self.path.display()), &e)
        }
    }

    /// Takes the lock at `offset` (exclusive, or shared) unless another process (another open file,
    /// for [`Kind::OpenFile`]) holds a conflicting one. False when it is held elsewhere.
    pub fn try_lock(&self, offset: u64, exclusive: bool) -> Result<bool> {
        let kind = if exclusive { libc::F_WRLCK } else { libc::F_RDLCK };
        self.set(offset, kind as libc::c_int).map_err(|e| self.fail(e))
    }

    /// [`LockFile::try_lock`], trying again every few milliseconds for up to `patience`.
    pub fn lock_within(&self, offset: u64, exclusive: bool, patience: Duration) -> Result<bool> {
        let deadline = Instant::now() + patience;
        let mut pause = Duration::from_millis(1);
        loop {
            if self.try_lock(offset, exclusive)? {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// Releases the lock at `offset` (nothing happens if it was not held).
    pub fn unlock(&self, offset: u64) {
        if let Err(e) = self.set(offset, libc::F_UNLCK as libc::c_int) {
            tracing::warn!("releasing a lock in '{}': {e}", self.path.display());
        }
    }

    /// Whether another process (another open file) holds a lock at `offset` that conflicts with an
    /// exclusive one: somebody else owns what the offset stands for.
    pub fn held_elsewhere(&self, offset: u64) -> Result<bool> {
        if forced() == Some("unsupported") {
            return Err(unavailable(&self.path, "FERRY_LOCKS=unsupported"));
        }
        let mut fl = flock(offset, libc::F_WRLCK as i16);
        let cmd = match self.kind {
            #[cfg(all(any(target_os = "linux", target_os = "android"), target_pointer_width = "64"))]
            Kind::OpenFile => ofd::GETLK,
            _ => libc::F_GETLK,
        };
        // SAFETY: a valid descriptor and a valid, initialised `struct flock`.
        if unsafe { libc::fcntl(self.file.as_raw_fd(), cmd, &mut fl) } != 0 {
            return Err(self.fail(std::io::Error::last_os_error()));
        }
        Ok(fl.l_type != libc::F_UNLCK as i16)
    }

    /// Checks that the file system enforces the locks: with a shared lock held at `offset` through
    /// this file, an exclusive lock through a second open of it must be refused. Only possible with
    /// open file description locks (a second descriptor would drop POSIX locks); with those, the
    /// errors of [`LockFile::try_lock`] are all the check there is.
    pub fn probe(&self, offset: u64) -> Result<()> {
        if self.kind != Kind::OpenFile {
            return Ok(());
        }
        let other = LockFile {
            file: File::options().read(true).write(true).open(&self.path).map_err(|e| Error::io("opening the lock file again", &e))?,
            kind: self.kind,
            path: self.path.clone(),
        };
        if !self.try_lock(offset, false)? {
            // Another process holds it exclusively right now: that refusal is the proof.
            return Ok(());
        }
        let enforced = !other.try_lock(offset, true)?;
        if !enforced {
            other.unlock(offset);
        }
        self.unlock(offset);
        drop(other);
        if enforced {
            Ok(())
        } else {
            Err(unavailable(&self.path, "a lock was granted twice"))
        }
    }
}

fn flock(offset: u64, kind: i16) -> libc::flock {
    // SAFETY: `struct flock` is plain data; all-zero is a valid value (and OFD locks need l_pid 0).
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind as _;
    fl.l_whence = libc::SEEK_SET as _;
    fl.l_start = offset as libc::off_t;
    fl.l_len = 1;
    fl
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_is_exclusive_across_open_files_and_dies_with_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owners");
        let a = LockFile::open(&path).unwrap();
        if a.kind() != Kind::OpenFile {
            return; // per-process locks cannot be told apart within one process
        }
        let b = LockFile::open(&path).unwrap();
        assert!(a.try_lock(7, true).unwrap());
        assert!(a.try_lock(7, true).unwrap(), "taking a held lock again through the same file succeeds");
        assert!(!b.try_lock(7, true).unwrap());
        assert!(!b.try_lock(7, false).unwrap());
        assert!(b.held_elsewhere(7).unwrap());
        assert!(!a.held_elsewhere(7).unwrap(), "a file's own locks are not somebody else's");
        assert!(b.try_lock(8, true).unwrap(), "a neighbouring byte is free");
        drop(a);
        assert!(b.try_lock(7, true).unwrap(), "closing the file released its locks");
    }

    #[test]
    fn shared_locks_share_and_keep_exclusive_ones_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("owners");
        let a = LockFile::open(&path).unwrap();
        if a.kind() != Kind::OpenFile {
            return;
        }
        let b = LockFile::open(&path).unwrap();
        assert!(a.try_lock(0, false).unwrap());
        assert!(b.try_lock(0, false).unwrap());
        assert!(a.held_elsewhere(0).unwrap());
        b.unlock(0);
        assert!(!a.held_elsewhere(0).unwrap());
        a.probe(0).unwrap();
        assert!(a.try_lock(0, true).unwrap(), "the probe leaves nothing behind");
    }
}
