//! Who runs which task, when several processes share a state directory.
//!
//! A process owns a task while it means to run it (queued in its scheduler, or running): it holds
//! the exclusive lock of the task's byte in the directory's `owners` file, at an offset given by
//! the task's `seq` (unique in the table, never reused). The kernel drops the lock when the process
//! dies, however it dies, so a task whose row says `queued` or `running` and whose byte is free has
//! no live owner: it is an orphan, and whoever takes its lock may run it from its journal. A
//! locked byte means a live owner elsewhere; nobody else runs that task.
//!
//! The file's first bytes are the directory's own: every process holds a shared lock on
//! [`PRESENCE`] while it has the directory open (so a process can tell whether it is alone), and
//! opening takes [`INIT`] exclusively while it creates, migrates and recovers the table.
//!
//! The `lock` file keeps its old meaning for older versions of Ferry, which took an exclusive
//! `flock` on it: this version takes a shared one, so an older process and a newer one never share
//! a directory (the newer one is refused with `state_dir_locked`, and so is the older one).

use super::locks::{self, LockFile};
use crate::engine::model::error::{Error, ErrorCode, Result};
use std::fs::{File, TryLockError};
use std::path::Path;
use std::time::Duration;

/// Shared lock of every process that has the directory open.
const PRESENCE: u64 = 0;
/// Exclusive lock around opening (creating, migrating, recovering the table).
const INIT: u64 = 1;
/// Used by the open's check that the file system enforces locks.
const PROBE: u64 = 2;
/// Offset of the byte of the task with `seq` 0.
const TASKS: u64 = 16;

/// Longest wait for another process to finish opening the directory.
const INIT_PATIENCE: Duration = Duration::from_secs(10);

const LOCK_FILE: &str = "lock";
const OWNERS_FILE: &str = "owners";

/// The ownership locks of one state directory, for this process (see the module docs).
#[derive(Debug)]
pub struct Owners {
    file: LockFile,
    _dir_lock: File,
}

/// Holds [`INIT`] until dropped.
pub struct InitGuard<'a>(&'a Owners);

impl Drop for InitGuard<'_> {
    fn drop(&mut self) {
        self.0.file.unlock(INIT);
    }
}

/// The error for a state directory this process may not write.
pub fn read_only(dir: &Path, e: &std::io::Error) -> Error {
    Error::new(
        ErrorCode::PermissionDenied,
        format!(
            "state directory '{}' cannot be written ({e}); a process that only reads can list it (`ferry list`, \
             Manager::list_read_only)",
            dir.display()
        ),
    )
}

fn unwritable(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EROFS) | Some(libc::EACCES) | Some(libc::EPERM))
}

impl Owners {
    /// Joins the processes that have `dir` open: the shared `flock` on `lock`, the `owners` file
    /// (checked to enforce its locks) and the presence lock. Call once per process and directory.
    pub fn open(dir: &Path) -> Result<Owners> {
        let dir_lock = File::options().create(true).truncate(false).write(true).open(dir.join(LOCK_FILE)).map_err(|e| {
            if unwritable(&e) {
                read_only(dir, &e)
            } else {
                Error::io("opening the state lock", &e)
            }
        })?;
        match dir_lock.try_lock_shared() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(Error::new(
                    ErrorCode::StateDirLocked,
                    format!("state directory '{}' is held by an older version of ferry, which allows one process at a time", dir.display()),
                ))
            }
            Err(TryLockError::Error(e)) => {
                return Err(if matches!(e.raw_os_error(), Some(libc::ENOLCK) | Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS)) {
                    locks::unavailable(dir, &e.to_string())
                } else {
                    Error::io("locking the state directory", &e)
                })
            }
        }
        let file = LockFile::open(&dir.join(OWNERS_FILE))?;
        file.probe(PROBE)?;
        if !file.try_lock(PRESENCE, false)? {
            return Err(Error::new(ErrorCode::StateDirLocked, format!("state directory '{}' is locked", dir.display())));
        }
        Ok(Owners { file, _dir_lock: dir_lock })
    }

    /// Looks at the ownership locks of `dir` without joining (for a reader: `ferry list`); `None`
    /// when the directory has no owners file or it cannot be read.
    pub fn look(dir: &Path) -> Option<LookingAtOwners> {
        LockFile::open_to_look(&dir.join(OWNERS_FILE)).ok().map(LookingAtOwners)
    }

    /// Waits (a few seconds at most) until no other process is opening the directory, and keeps
    /// the others out until the guard drops.
    pub fn init(&self) -> Result<InitGuard<'_>> {
        if self.file.lock_within(INIT, true, INIT_PATIENCE)? {
            Ok(InitGuard(self))
        } else {
            Err(Error::new(ErrorCode::StateDirLocked, "another process has been opening the state directory for too long"))
        }
    }

    fn offset(seq: i64) -> u64 {
        TASKS + seq.max(0) as u64
    }

    /// Takes the task with `seq`; false when a live process elsewhere owns it.
    pub fn try_own(&self, seq: i64) -> Result<bool> {
        self.file.try_lock(Self::offset(seq), true)
    }

    /// [`Owners::try_own`], trying again for up to `patience` (for a process about to let it go).
    pub fn own_within(&self, seq: i64, patience: Duration) -> Result<bool> {
        self.file.lock_within(Self::offset(seq), true, patience)
    }

    /// Gives the task with `seq` up (anyone may take it over now).
    pub fn release(&self, seq: i64) {
        self.file.unlock(Self::offset(seq));
    }

    /// Whether a live process elsewhere owns the task with `seq`.
    pub fn owned_elsewhere(&self, seq: i64) -> Result<bool> {
        self.file.held_elsewhere(Self::offset(seq))
    }

    /// Whether another process has the directory open now.
    pub fn others_present(&self) -> bool {
        self.file.held_elsewhere(PRESENCE).unwrap_or(true)
    }

    /// The kind of lock in use (see [`locks::Kind`]).
    pub fn kind(&self) -> locks::Kind {
        self.file.kind()
    }
}

/// The ownership locks of a state directory seen from a process that has not joined it.
#[derive(Debug)]
pub struct LookingAtOwners(LockFile);

impl LookingAtOwners {
    /// Whether a live process owns the task with `seq`.
    pub fn owned(&self, seq: i64) -> Result<bool> {
        self.0.held_elsewhere(Owners::offset(seq))
    }
}
