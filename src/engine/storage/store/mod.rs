//! The persistent task table: one SQLite database (WAL) per state directory.
//!
//! Tables: `tasks` (one row per file task: request, state, resource facts, error) and `ranges`
//! (the journal: per segment of a download, its written and durable offsets). Any number of
//! processes may open a state directory at once: SQLite's WAL locking shares the table, writes
//! that must be decided atomically across processes run in `BEGIN IMMEDIATE` transactions, and a
//! task is run by the one process that holds its lock in the `owners` file (see
//! [`super::owners`]). Each change another process must see carries a revision (`shared.rs`).
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
//! Schema 2 added `tasks.part_file`; schema 3 the revisions, `control`, `clock` and `gone` of
//! several processes sharing the table. Older tables are migrated on open.

use super::boot;
use super::owners::Owners;
use crate::engine::model::error::{Error, ErrorCode, Result};
use crate::engine::model::network::NetworkPolicy;
use crate::engine::model::roots::Roots;
use crate::engine::model::task::{TaskError, TaskState};
use crate::engine::ranges::map::SegmentRow;
use parking_lot::{Mutex, MutexGuard};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};

mod leases;
mod queries;
mod recovery;
mod schema;
mod shared;
#[cfg(test)]
mod tests;
pub mod tx;

pub use leases::{lease_tx, LeaseRow, LeaseState};
pub use schema::CRASH_CREATED;
use schema::{create_if_absent, device_of, migrate};
pub use shared::{Changes, Control};
const SCHEMA_VERSION: i64 = 5;
const DB_FILE: &str = "tasks.sqlite3";

/// A persisted file task.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskRow {
    /// Id.
    pub id: String,
    /// Enqueue order.
    pub seq: i64,
    /// URL.
    pub url: String,
    /// Destination as stored: an absolute path, or `@name/<path>` relative to a root (see
    /// [`Roots`]); [`Roots::resolve`] gives the path.
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
    /// Which networks the task may use.
    pub network_policy: NetworkPolicy,
    /// The task's own bandwidth cap, bytes per second.
    pub rate_limit: Option<u64>,
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
    /// Tasks that were running when their process died, now queued again (tasks that a live
    /// process runs are left to it).
    pub recovered_running: usize,
    /// Tasks whose file the last process had renamed into place but not yet recorded as
    /// completed (it died in between), now recorded as completed.
    pub published: usize,
}

/// The task table of one state directory.
pub struct Store {
    conn: Mutex<Connection>,
    dir: PathBuf,
    /// This process's ownership locks (none for a read-only view).
    owners: Option<std::sync::Arc<Owners>>,
    /// Device of the state directory (`st_dev`): a `syncfs` of that file system covers the WAL.
    device: Option<u64>,
    /// `PRAGMA data_version` when [`Store::foreign_commits`] last looked.
    data_version: AtomicI64,
    /// The table revision the tasks [`Store::open`] returned were read at.
    opened_at: i64,
    /// The roots stored destinations are resolved against (see [`Roots`]).
    roots: Roots,
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
    /// Opens (creating if needed) the task table in `dir`, joins the processes that have it open
    /// (see [`super::owners`]), and recovers what dead processes left behind: tasks they ran, and
    /// completions they did not record. Tasks a live process runs are left alone. The tasks are
    /// read at revision [`Store::opened_at`] (see [`Store::changes_since`]).
    pub fn open(dir: &Path) -> Result<(Store, Vec<StoredTask>, Recovery)> {
        Self::open_with(dir, Roots::default())
    }

    /// [`Store::open`] with the roots that destinations stored relative to one (`@name/...`) are
    /// resolved against; such a destination whose root is not among them is left alone.
    pub fn open_with(dir: &Path, roots: Roots) -> Result<(Store, Vec<StoredTask>, Recovery)> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating the state directory", &e))?;
        let owners = std::sync::Arc::new(Owners::open(dir)?);
        let opening = owners.clone();
        let init = opening.init()?;
        create_if_absent(dir);
        let mut conn = Connection::open(dir.join(DB_FILE)).map_err(|e| Self::open_failed(dir, e))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(|e| Self::open_failed(dir, e))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        // Closing leaves the WAL for the next open instead of copying it into the database and
        // syncing both: a process that ends after a batch would otherwise wait for two more device
        // flushes that durability does not need (the WAL is the record; opening replays it).
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
        // A transaction that reads before it writes must hold the write lock from its start: in WAL
        // mode, one that would upgrade after another process committed fails at once, without
        // waiting for the busy timeout.
        conn.set_transaction_behavior(TransactionBehavior::Immediate);
        migrate(&conn)?;
        leases::create_table(&conn)?;
        let device = device_of(&File::open(dir).map_err(|e| Error::io("opening the state directory", &e))?);
        let mut store = Store {
            conn: Mutex::new(conn),
            dir: dir.to_path_buf(),
            owners: Some(owners),
            device,
            data_version: AtomicI64::new(0),
            opened_at: 0,
            roots,
        };
        let mut recovery = store.recover()?;
        recovery.published = store.reconcile_published()?;
        store.trim_gone()?;
        drop(init);
        let (tasks, rev) = store.load_at_rev()?;
        store.opened_at = rev;
        store.foreign_commits();
        Ok((store, tasks, recovery))
    }

    /// A table that cannot even be opened in a directory that exists: say whether it is because
    /// the directory cannot be written.
    fn open_failed(dir: &Path, e: rusqlite::Error) -> Error {
        if let rusqlite::Error::SqliteFailure(f, _) = &e {
            if matches!(f.code, rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::PermissionDenied) {
                let io = std::io::Error::from_raw_os_error(libc::EACCES);
                return super::owners::read_only(dir, &io);
            }
        }
        Error::from(e)
    }

    /// Opens the task table read-only, without the lock (for listing while another process runs).
    pub fn open_read_only(dir: &Path) -> Result<(Store, Vec<StoredTask>)> {
        let path = dir.join(DB_FILE);
        if !path.exists() {
            return Err(Error::new(ErrorCode::TaskNotFound, format!("no task table in '{}'", dir.display())));
        }
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let store = Store {
            conn: Mutex::new(conn),
            dir: dir.to_path_buf(),
            owners: None,
            device: None,
            data_version: AtomicI64::new(0),
            opened_at: 0,
            roots: Roots::default(),
        };
        let tasks = store.load_all()?;
        Ok((store, tasks))
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The roots stored destinations are resolved against.
    pub fn roots(&self) -> &Roots {
        &self.roots
    }

    /// Locks the connection (the journal and structural range changes run under this lock).
    pub fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock()
    }

    /// The table revision the tasks [`Store::open`] returned were read at.
    pub fn opened_at(&self) -> i64 {
        self.opened_at
    }

    /// This process's ownership locks of the directory (`None` for a read-only view).
    pub fn owners(&self) -> Option<&Owners> {
        self.owners.as_deref()
    }

    /// Runs `f` in one write transaction that holds the table's write lock from its start
    /// (`BEGIN IMMEDIATE`): what it reads, no other process changes until it commits.
    pub fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.conn.lock();
        let t = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&t)?;
        t.commit()?;
        Ok(out)
    }

    fn load_all(&self) -> Result<Vec<StoredTask>> {
        load_on(&self.conn.lock())
    }

    /// Every task, and the revision they were read at, from one snapshot of the table.
    fn load_at_rev(&self) -> Result<(Vec<StoredTask>, i64)> {
        let mut conn = self.conn.lock();
        let t = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let rev = shared::current_rev(&t)?;
        let tasks = load_on(&t)?;
        t.commit()?;
        Ok((tasks, rev))
    }
}

/// How many columns [`row_columns`] names: a statement that selects more after them reads those
/// from this index on.
pub(super) const ROW_COLUMNS: usize = 22;

/// The columns [`read_row`] reads, in its order, from a table of schema `version`.
pub(super) fn row_columns(version: i64) -> String {
    // A reader may look at a table of schema 1 (written by an older process that owns it).
    let part_file = if version >= 2 { "part_file" } else { "NULL" };
    let network_policy = if version >= 4 { "network_policy" } else { "0" };
    let rate_limit = if version >= 5 { "rate_limit" } else { "NULL" };
    format!(
        "id, seq, url, destination, headers, connections, sha256, priority, overwrite, state, total, etag,
         last_modified, bytes, error_code, error_message, created_ms, updated_ms, error_http_status, {part_file},
         {network_policy}, {rate_limit}"
    )
}

/// A task row from a statement that selected [`row_columns`] first.
pub(super) fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TaskRow> {
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
        network_policy: NetworkPolicy::from_i64(r.get(20)?),
        rate_limit: r.get::<_, Option<i64>>(21)?.filter(|&v| v > 0).map(u),
    })
}

fn load_on(conn: &Connection) -> Result<Vec<StoredTask>> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let mut stmt = conn.prepare(&format!("SELECT {} FROM tasks ORDER BY seq", row_columns(version)))?;
    let rows = stmt.query_map([], read_row)?;
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
