//! The persistent task table: one SQLite database (WAL) per state directory.
//!
//! Tables: `tasks` (one row per file task: request, state, resource facts, error) and `ranges`
//! (the journal: per segment of a download, its written and durable offsets). One process owns a
//! state directory at a time (an exclusive lock file); other processes may read it.
//!
//! Durability rules (see ARCHITECTURE.md):
//! - `synchronous=NORMAL` in WAL mode: a commit is handed to the kernel at once (survives a killed
//!   process) and reaches the disk at the next checkpoint (may be lost to a power loss).
//! - `written` offsets are committed right after the bytes are handed to the kernel; `durable`
//!   offsets only after the part file was synced. After a reboot, `written` falls back to `durable`.
//! - The part file a journal describes is identified in the row (`part_file`), and becomes a
//!   publish mark just before the rename; opening completes tasks whose mark matches their
//!   destination (a process killed between the rename and the recorded completion).
//! - Memory and stream tasks are not stored: their consumer does not survive the process.
//!
//! Schema 2 added `tasks.part_file`; a table of schema 1 is migrated on open.

use super::boot;
use crate::engine::model::error::{Error, ErrorCode, Result};
use crate::engine::model::task::{TaskError, TaskState};
use crate::engine::ranges::map::SegmentRow;
use parking_lot::{Mutex, MutexGuard};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction};
use std::fs::File;
use std::path::{Path, PathBuf};

mod leases;
mod queries;
mod schema;
#[cfg(test)]
mod tests;
pub mod tx;

pub use leases::{lease_tx, LeaseRow, LeaseState};
pub use schema::CRASH_CREATED;
use schema::{create_if_absent, device_of, migrate};
const SCHEMA_VERSION: i64 = 2;
const DB_FILE: &str = "tasks.sqlite3";
const LOCK_FILE: &str = "lock";

/// A persisted file task.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskRow {
    /// Id.
    pub id: String,
    /// Enqueue order.
    pub seq: i64,
    /// URL.
    pub url: String,
    /// Destination path.
    pub destination: String,
    /// Request headers.
    pub headers: Vec<(String, String)>,
    /// Connection setting (`None` = automatic).
    pub connections: Option<u32>,
    /// Expected SHA-256.
    pub sha256: Option<String>,
    /// Priority.
    pub priority: i32,
    /// Overwrite an existing destination.
    pub overwrite: bool,
    /// State.
    pub state: TaskState,
    /// Resource length, once known.
    pub total: Option<u64>,
    /// Strong ETag of the resource.
    pub etag: Option<String>,
    /// Last-Modified of the resource.
    pub last_modified: Option<String>,
    /// Bytes done (exact for completed tasks; progress hint otherwise).
    pub bytes: u64,
    /// Last error.
    pub error: Option<TaskError>,
    /// Creation time, ms since the epoch.
    pub created_ms: i64,
    /// Last update, ms since the epoch.
    pub updated_ms: i64,
    /// Which file the journal describes: the part file's identity (`dev:ino:birth`, see
    /// [`super::part_file::Identity`]), written with the journal's layout, so that a part file
    /// replaced behind the engine's back is never resumed. Just before the verified file is renamed
    /// into place it becomes the publish mark `<identity>@<len>:<mtime>`, so that the next open
    /// recognises a rename whose completion a killed process did not record. Cleared on completion.
    pub part_file: Option<String>,
}

/// A task row with its journal.
#[derive(Clone, Debug)]
pub struct StoredTask {
    /// The task.
    pub row: TaskRow,
    /// Its range journal (empty when nothing resumable was recorded).
    pub ranges: Vec<SegmentRow>,
}

/// What opening found.
#[derive(Clone, Debug, Default)]
pub struct Recovery {
    /// The machine rebooted since the journal was written: only durable offsets were kept.
    pub rebooted: bool,
    /// Tasks that were running when the last process died, now queued again.
    pub recovered_running: usize,
    /// Tasks whose file the last process had renamed into place but not yet recorded as
    /// completed (it died in between), now recorded as completed.
    pub published: usize,
}

/// The task table of one state directory.
pub struct Store {
    conn: Mutex<Connection>,
    dir: PathBuf,
    _lock: Option<File>,
    /// Device of the state directory (`st_dev`): a `syncfs` of that file system covers the WAL.
    device: Option<u64>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish()
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn u(v: i64) -> u64 {
    v.max(0) as u64
}

impl Store {
    /// Opens (creating if needed) the task table in `dir`, taking the directory's lock, and
    /// recovers from whatever the last process left behind.
    pub fn open(dir: &Path) -> Result<(Store, Vec<StoredTask>, Recovery)> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating the state directory", &e))?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(|e| Error::io("opening the state lock", &e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(_) => {
                return Err(Error::new(
                    ErrorCode::StateDirLocked,
                    format!("state directory '{}' is in use by another process", dir.display()),
                ))
            }
        }
        create_if_absent(dir);
        let conn = Connection::open(dir.join(DB_FILE))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Closing leaves the WAL for the next open instead of copying it into the database and
        // syncing both: a process that ends after a batch would otherwise wait for two more device
        // flushes that durability does not need (the WAL is the record; opening replays it).
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
        migrate(&conn)?;
        leases::create_table(&conn)?;
        let device = device_of(&lock);
        let store = Store { conn: Mutex::new(conn), dir: dir.to_path_buf(), _lock: Some(lock), device };
        let mut recovery = store.recover()?;
        recovery.published = store.reconcile_published()?;
        let tasks = store.load_all()?;
        Ok((store, tasks, recovery))
    }

    /// Opens the task table read-only, without the lock (for listing while another process runs).
    pub fn open_read_only(dir: &Path) -> Result<(Store, Vec<StoredTask>)> {
        let path = dir.join(DB_FILE);
        if !path.exists() {
            return Err(Error::new(ErrorCode::TaskNotFound, format!("no task table in '{}'", dir.display())));
        }
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let store = Store { conn: Mutex::new(conn), dir: dir.to_path_buf(), _lock: None, device: None };
        let tasks = store.load_all()?;
        Ok((store, tasks))
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Locks the connection (the journal and structural range changes run under this lock).
    pub fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock()
    }

    fn recover(&self) -> Result<Recovery> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let stored: Option<String> = tx.query_row("SELECT value FROM meta WHERE key = 'boot_id'", [], |r| r.get(0)).optional()?;
        let current = boot::current_boot_id();
        let rebooted = match (&stored, &current) {
            (Some(a), Some(b)) => a != b,
            (None, _) => false,
            (Some(_), None) => true,
        };
        if rebooted {
            tx.execute("UPDATE ranges SET written = durable", [])?;
        }
        if let Some(id) = &current {
            tx.execute("INSERT INTO meta(key, value) VALUES ('boot_id', ?1) ON CONFLICT(key) DO UPDATE SET value = ?1", [id])?;
        }
        // A task whose ranges the OS is fetching stays running: its leases outlive the process.
        let recovered_running = tx.execute(
            "UPDATE tasks SET state = ?1, updated_ms = ?2 WHERE state = ?3
                 AND id NOT IN (SELECT task_id FROM leases WHERE state = 0)",
            params![TaskState::Queued.as_i64(), now_ms(), TaskState::Running.as_i64()],
        )?;
        tx.commit()?;
        Ok(Recovery { rebooted, recovered_running, published: 0 })
    }

    /// Finishes the completions a killed process left half done: a task with a publish mark whose
    /// destination is the very file it renamed there (same device, inode, birth, length and
    /// modification time) is completed.
    /// Any other mark is stale (the rename never happened, or the file was replaced since): it goes
    /// back to the plain part file identity, and the task resumes or fails as usual.
    fn reconcile_published(&self) -> Result<usize> {
        let mut conn = self.conn.lock();
        let marked: Vec<(String, String, String)> = {
            let mut stmt =
                conn.prepare("SELECT id, destination, part_file FROM tasks WHERE part_file LIKE '%@%' AND state NOT IN (?1, ?2)")?;
            let rows = stmt.query_map(params![TaskState::Completed.as_i64(), TaskState::Cancelled.as_i64()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        if marked.is_empty() {
            return Ok(0);
        }
        let tx = conn.transaction()?;
        let mut published = 0;
        for (id, destination, mark) in marked {
            match super::part_file::identity_of(Path::new(&destination)) {
                Some(found) if found.publish_mark() == mark => {
                    tracing::info!("{id}: its file is in place; recording the completion the last process did not");
                    tx::complete(&tx, &id, found.len)?;
                    published += 1;
                }
                _ => {
                    tx::set_part_file(&tx, &id, Some(super::part_file::Identity::file_part(&mark)))?;
                }
            }
        }
        tx.commit()?;
        Ok(published)
    }

    fn load_all(&self) -> Result<Vec<StoredTask>> {
        let conn = self.conn.lock();
        // A reader may look at a table of schema 1 (written by an older process that owns it).
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let part_file = if version >= 2 { "part_file" } else { "NULL" };
        let mut stmt = conn.prepare(&format!(
            "SELECT id, seq, url, destination, headers, connections, sha256, priority, overwrite, state, total, etag,
                    last_modified, bytes, error_code, error_message, created_ms, updated_ms, error_http_status, {part_file}
             FROM tasks ORDER BY seq"
        ))?;
        let rows = stmt.query_map([], |r| {
            let headers: String = r.get(4)?;
            let code: Option<i64> = r.get(14)?;
            let message: Option<String> = r.get(15)?;
            Ok(TaskRow {
                id: r.get(0)?,
                seq: r.get(1)?,
                url: r.get(2)?,
                destination: r.get(3)?,
                headers: serde_json::from_str(&headers).unwrap_or_default(),
                connections: r.get::<_, Option<i64>>(5)?.map(|n| n as u32),
                sha256: r.get(6)?,
                priority: r.get(7)?,
                overwrite: r.get(8)?,
                state: TaskState::from_i64(r.get(9)?).unwrap_or(TaskState::Failed),
                total: r.get::<_, Option<i64>>(10)?.map(u),
                etag: r.get(11)?,
                last_modified: r.get(12)?,
                bytes: u(r.get(13)?),
                error: code.map(|c| TaskError {
                    code: ErrorCode::from_u16(c as u16).unwrap_or(ErrorCode::Internal),
                    message: message.unwrap_or_default(),
                    http_status: r.get::<_, Option<i64>>(18).ok().flatten().map(|s| s as u16),
                }),
                created_ms: r.get(16)?,
                updated_ms: r.get(17)?,
                part_file: r.get(19)?,
            })
        })?;
        let mut tasks: Vec<StoredTask> = Vec::new();
        let mut index = std::collections::HashMap::new();
        for row in rows {
            let row = row?;
            index.insert(row.id.clone(), tasks.len());
            tasks.push(StoredTask { row, ranges: Vec::new() });
        }
        let mut stmt = conn.prepare("SELECT task_id, start, end_, written, durable FROM ranges")?;
        let mut q = stmt.query([])?;
        while let Some(r) = q.next()? {
            let id: String = r.get(0)?;
            if let Some(&i) = index.get(&id) {
                tasks[i].ranges.push(SegmentRow { start: u(r.get(1)?), end: u(r.get(2)?), written: u(r.get(3)?), durable: u(r.get(4)?) });
            }
        }
        Ok(tasks)
    }
}
