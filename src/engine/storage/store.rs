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
        let recovered_running = tx.execute(
            "UPDATE tasks SET state = ?1, updated_ms = ?2 WHERE state = ?3",
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

    /// The next free enqueue sequence number.
    pub fn next_seq(&self) -> Result<i64> {
        let conn = self.conn.lock();
        Ok(conn.query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM tasks", [], |r| r.get(0))?)
    }

    /// Inserts new tasks in one transaction.
    pub fn insert_tasks(&self, rows: &[TaskRow]) -> Result<()> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO tasks (id, seq, url, destination, headers, connections, sha256, priority, overwrite, state,
                                    total, etag, last_modified, bytes, error_code, error_message, created_ms, updated_ms,
                                    error_http_status)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
            )?;
            for t in rows {
                stmt.execute(params![
                    t.id,
                    t.seq,
                    t.url,
                    t.destination,
                    serde_json::to_string(&t.headers).unwrap_or_else(|_| "[]".into()),
                    t.connections.map(i64::from),
                    t.sha256,
                    t.priority,
                    t.overwrite,
                    t.state.as_i64(),
                    t.total.map(|v| v as i64),
                    t.etag,
                    t.last_modified,
                    t.bytes as i64,
                    t.error.as_ref().map(|e| e.code.as_u16() as i64),
                    t.error.as_ref().map(|e| e.message.clone()),
                    t.created_ms,
                    t.updated_ms,
                    t.error.as_ref().and_then(|e| e.http_status).map(i64::from),
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Records a state change (and the error, and the byte count).
    pub fn set_state(&self, id: &str, state: TaskState, error: Option<&TaskError>, bytes: u64) -> Result<()> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached(
            "UPDATE tasks SET state = ?2, error_code = ?3, error_message = ?4, bytes = ?5, updated_ms = ?6,
                              error_http_status = ?7 WHERE id = ?1",
        )?;
        stmt.execute(params![
            id,
            state.as_i64(),
            error.map(|e| e.code.as_u16() as i64),
            error.map(|e| e.message.clone()),
            bytes as i64,
            now_ms(),
            error.and_then(|e| e.http_status).map(i64::from)
        ])?;
        Ok(())
    }

    /// Records a completed task and drops its journal, in one transaction.
    pub fn complete(&self, id: &str, bytes: u64) -> Result<()> {
        self.complete_many(&[(id, bytes)])
    }

    /// Records completed tasks and drops their journals, in one transaction.
    pub fn complete_many(&self, done: &[(&str, u64)]) -> Result<()> {
        self.complete_and_mark(done, &[])
    }

    /// Sets the publish marks (see [`TaskRow::part_file`]) of files about to be renamed into place,
    /// in one transaction. Committed before the renames, so that a process killed between a rename
    /// and the recorded completion is recognised by the next open. The commit is not synced here:
    /// the publisher makes it durable before any rename, together with the files' data when one
    /// `syncfs` covers both (else with [`Store::sync_wal`]), so that a power loss after the renames
    /// is recognised too, even if the completion records that follow are lost with the unsynced rest.
    pub fn mark_publishing(&self, marks: &[(&str, &str)]) -> Result<()> {
        self.complete_and_mark(&[], marks)
    }

    /// [`Store::complete_many`] and [`Store::mark_publishing`] in one transaction: the publisher
    /// records the files whose names are durable while it marks the next ones.
    pub fn complete_and_mark(&self, done: &[(&str, u64)], marks: &[(&str, &str)]) -> Result<()> {
        let mut conn = self.conn.lock();
        let t = conn.transaction()?;
        // Small files finish before their first journal commit, so most groups find no journal at
        // all: one look at the table then spares a DELETE per file (about a fifth of the
        // publisher's SQLite work in a batch of 1000 small files).
        let journals =
            !done.is_empty() && t.prepare_cached("SELECT EXISTS (SELECT 1 FROM ranges)")?.query_row([], |r| r.get::<_, bool>(0))?;
        for (id, bytes) in done {
            if journals {
                tx::drop_journal(&t, id)?;
            }
            tx::record_completed(&t, id, *bytes)?;
        }
        for (id, mark) in marks {
            tx::set_part_file(&t, id, Some(mark))?;
        }
        t.commit()?;
        Ok(())
    }

    /// Makes every committed transaction durable: one `fdatasync` of the WAL (what
    /// `synchronous=FULL` does after a commit).
    pub fn sync_wal(&self) -> Result<()> {
        let _conn = self.conn.lock();
        let wal = self.dir.join(format!("{DB_FILE}-wal"));
        match File::open(&wal).and_then(|f| f.sync_data()) {
            Ok(()) => Ok(()),
            // No WAL: everything committed is in the database file, which checkpoints sync.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("syncing the task table", &e)),
        }
    }

    /// The device (`st_dev`) of the state directory's file system, when known: a `syncfs` there
    /// makes this table's commits durable.
    pub fn device(&self) -> Option<u64> {
        self.device
    }

    /// Changes a task's priority.
    pub fn set_priority(&self, id: &str, priority: i32) -> Result<()> {
        let conn = self.conn.lock();
        conn.execute("UPDATE tasks SET priority = ?2, updated_ms = ?3 WHERE id = ?1", params![id, priority, now_ms()])?;
        Ok(())
    }

    /// Deletes a task and its journal.
    pub fn delete_task(&self, id: &str) -> Result<()> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM ranges WHERE task_id = ?1", [id])?;
        tx.execute("DELETE FROM tasks WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(())
    }
}

/// Statements that run inside a caller's transaction, under [`Store::lock`].
pub mod tx {
    use super::*;

    /// Records a completed task (size, no error, no part file) and drops its journal.
    pub fn complete(tx: &Transaction<'_>, id: &str, bytes: u64) -> Result<()> {
        drop_journal(tx, id)?;
        record_completed(tx, id, bytes)
    }

    /// Drops a task's journal (its range rows).
    pub fn drop_journal(tx: &Transaction<'_>, id: &str) -> Result<()> {
        tx.prepare_cached("DELETE FROM ranges WHERE task_id = ?1")?.execute([id])?;
        Ok(())
    }

    /// Records a completed task (size, no error, no part file); its journal is the caller's.
    pub fn record_completed(tx: &Transaction<'_>, id: &str, bytes: u64) -> Result<()> {
        tx.prepare_cached(
            "UPDATE tasks SET state = ?2, error_code = NULL, error_message = NULL, error_http_status = NULL, bytes = ?3,
                              total = ?3, part_file = NULL, updated_ms = ?4 WHERE id = ?1",
        )?
        .execute(params![id, TaskState::Completed.as_i64(), bytes as i64, now_ms()])?;
        Ok(())
    }

    /// Records which part file the journal describes (or the publish mark; see [`TaskRow::part_file`]).
    pub fn set_part_file(tx: &Transaction<'_>, id: &str, part_file: Option<&str>) -> Result<()> {
        tx.prepare_cached("UPDATE tasks SET part_file = ?2 WHERE id = ?1")?.execute(params![id, part_file])?;
        Ok(())
    }

    /// Records what the probe learned about the resource, and replaces the journal with `ranges`.
    pub fn set_resource(
        tx: &Transaction<'_>,
        id: &str,
        total: Option<u64>,
        etag: Option<&str>,
        last_modified: Option<&str>,
        ranges: &[SegmentRow],
    ) -> Result<()> {
        tx.execute(
            "UPDATE tasks SET total = ?2, etag = ?3, last_modified = ?4, updated_ms = ?5 WHERE id = ?1",
            params![id, total.map(|t| t as i64), etag, last_modified, now_ms()],
        )?;
        replace_ranges(tx, id, ranges)
    }

    /// Replaces a task's journal.
    pub fn replace_ranges(tx: &Transaction<'_>, id: &str, ranges: &[SegmentRow]) -> Result<()> {
        tx.execute("DELETE FROM ranges WHERE task_id = ?1", [id])?;
        let mut stmt = tx.prepare_cached("INSERT INTO ranges (task_id, start, end_, written, durable) VALUES (?1, ?2, ?3, ?4, ?5)")?;
        for r in ranges {
            stmt.execute(params![id, r.start as i64, r.end as i64, r.written as i64, r.durable as i64])?;
        }
        Ok(())
    }

    /// Records a split: the lower segment now ends at `upper.start`; `upper` is new.
    pub fn split(tx: &Transaction<'_>, id: &str, lower_start: u64, upper: &SegmentRow) -> Result<()> {
        tx.execute("UPDATE ranges SET end_ = ?3 WHERE task_id = ?1 AND start = ?2", params![id, lower_start as i64, upper.start as i64])?;
        tx.execute(
            "INSERT OR REPLACE INTO ranges (task_id, start, end_, written, durable) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, upper.start as i64, upper.end as i64, upper.written as i64, upper.durable as i64],
        )?;
        Ok(())
    }

    /// Journals written offsets.
    pub fn write_progress(tx: &Transaction<'_>, id: &str, rows: &[SegmentRow]) -> Result<()> {
        let mut stmt = tx.prepare_cached("UPDATE ranges SET written = ?3 WHERE task_id = ?1 AND start = ?2 AND written < ?3")?;
        for r in rows {
            stmt.execute(params![id, r.start as i64, r.written as i64])?;
        }
        Ok(())
    }

    /// Journals durable offsets (after the part file was synced).
    pub fn write_durable(tx: &Transaction<'_>, id: &str, rows: &[SegmentRow]) -> Result<()> {
        let mut stmt = tx.prepare_cached(
            "UPDATE ranges SET durable = ?3, written = MAX(written, ?3) WHERE task_id = ?1 AND start = ?2 AND durable < ?3 AND end_ >= ?3",
        )?;
        for r in rows {
            stmt.execute(params![id, r.start as i64, r.durable as i64])?;
        }
        Ok(())
    }

    /// Records the bytes-done hint shown by `list` in other processes, and that a queued task is
    /// running (the start of a run is not written on its own: a crash turns running back into
    /// queued anyway, so the first journal commit is soon enough).
    pub fn set_bytes(tx: &Transaction<'_>, id: &str, bytes: u64) -> Result<()> {
        tx.prepare_cached("UPDATE tasks SET bytes = ?2, state = CASE state WHEN 0 THEN 1 ELSE state END WHERE id = ?1")?
            .execute(params![id, bytes as i64])?;
        Ok(())
    }
}

/// Where a new task table is built before it takes its name.
const NEW_DB_FILE: &str = "tasks.sqlite3.new";
/// Crash point (see [`super::crash`]) between building a new task table and naming it.
pub const CRASH_CREATED: &str = "store:created";

/// Builds the task table of a new state directory under a temporary name, syncs it once and renames
/// it into place, so that the table appears whole or not at all. Created in place, the table cost
/// six device flushes before the first download could start (SQLite's journal, its directory, the
/// journal again and the database to switch to WAL; then the WAL and the directory): about 2 ms of
/// every first run. Built aside, a crash leaves only a file the next open throws away, so nothing
/// in the building needs syncing but the finished file; the WAL's own sync at the first commit
/// covers the directory, rename included (before that, a lost rename only means a new empty table).
///
/// A directory holding any file of an earlier table (a WAL without its database, say) is left to
/// SQLite as before, and so is one where the table cannot be built aside (the temporary name taken
/// by a directory, say): the open that follows creates it in place, or reports why it cannot.
fn create_if_absent(dir: &Path) {
    let leftovers = ["", "-wal", "-journal"].iter().any(|suffix| dir.join(format!("{DB_FILE}{suffix}")).symlink_metadata().is_ok());
    if leftovers {
        return;
    }
    let remove_new = || {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let _ = std::fs::remove_file(dir.join(format!("{NEW_DB_FILE}{suffix}")));
        }
    };
    remove_new();
    if let Err(e) = build_aside(dir) {
        tracing::info!("building the task table aside failed ({e}); creating it in place");
        remove_new();
    }
}

fn build_aside(dir: &Path) -> Result<()> {
    let new = dir.join(NEW_DB_FILE);
    {
        let conn = Connection::open(&new)?;
        conn.pragma_update(None, "synchronous", "OFF")?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        migrate(&conn)?;
        // Into the database file, so that it stands alone once renamed; closing removes the WAL.
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        conn.close().map_err(|(_, e)| Error::from(e))?;
    }
    File::open(&new).and_then(|f| f.sync_all()).map_err(|e| Error::io("syncing the new task table", &e))?;
    super::crash::point(CRASH_CREATED);
    std::fs::rename(&new, dir.join(DB_FILE)).map_err(|e| Error::io("naming the new task table", &e))?;
    Ok(())
}

fn device_of(file: &File) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    file.metadata().ok().map(|m| m.dev())
}

fn migrate(conn: &Connection) -> Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(Error::new(
            ErrorCode::Database,
            format!("task table schema {version} is newer than this version of ferry understands ({SCHEMA_VERSION})"),
        ));
    }
    if version < 1 {
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS tasks (
                 id TEXT PRIMARY KEY,
                 seq INTEGER NOT NULL,
                 url TEXT NOT NULL,
                 destination TEXT NOT NULL,
                 headers TEXT NOT NULL,
                 connections INTEGER,
                 sha256 TEXT,
                 priority INTEGER NOT NULL,
                 overwrite INTEGER NOT NULL,
                 state INTEGER NOT NULL,
                 total INTEGER,
                 etag TEXT,
                 last_modified TEXT,
                 bytes INTEGER NOT NULL DEFAULT 0,
                 error_code INTEGER,
                 error_message TEXT,
                 error_http_status INTEGER,
                 created_ms INTEGER NOT NULL,
                 updated_ms INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS ranges (
                 task_id TEXT NOT NULL,
                 start INTEGER NOT NULL,
                 end_ INTEGER NOT NULL,
                 written INTEGER NOT NULL,
                 durable INTEGER NOT NULL,
                 PRIMARY KEY (task_id, start)
             ) WITHOUT ROWID;
             PRAGMA user_version = 1;
             COMMIT;",
        )?;
    }
    if version < 2 {
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE tasks ADD COLUMN part_file TEXT;
             PRAGMA user_version = 2;
             COMMIT;",
        )?;
    }
    // Tables made before 2026-11-30 carry an index on the destination that no query uses; each
    // insert paid for it (a string b-tree insert, a few thousand instructions per task). Dropping
    // it changes nothing an older version relies on, so the schema version stays.
    conn.execute_batch("DROP INDEX IF EXISTS tasks_destination")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, seq: i64) -> TaskRow {
        TaskRow {
            id: id.into(),
            seq,
            url: "http://h/x".into(),
            destination: format!("/tmp/{id}"),
            headers: vec![("A".into(), "b".into())],
            connections: Some(4),
            sha256: None,
            priority: 0,
            overwrite: false,
            state: TaskState::Queued,
            total: None,
            etag: None,
            last_modified: None,
            bytes: 0,
            error: None,
            created_ms: 1,
            updated_ms: 1,
            part_file: None,
        }
    }

    #[test]
    fn rows_survive_reopen_and_running_becomes_queued() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (s, tasks, _) = Store::open(dir.path()).unwrap();
            assert!(tasks.is_empty());
            s.insert_tasks(&[row("a", 1), row("b", 2)]).unwrap();
            s.set_state("a", TaskState::Running, None, 0).unwrap();
            let mut c = s.lock();
            let t = c.transaction().unwrap();
            let r = [SegmentRow { start: 0, end: 10, written: 5, durable: 2 }, SegmentRow { start: 10, end: 20, written: 10, durable: 10 }];
            tx::set_resource(&t, "a", Some(20), Some("\"e\""), None, &r).unwrap();
            tx::write_progress(&t, "a", &[SegmentRow { start: 0, end: 10, written: 7, durable: 2 }]).unwrap();
            t.commit().unwrap();
        }
        let (_s, tasks, rec) = Store::open(dir.path()).unwrap();
        assert_eq!(rec.recovered_running, 1);
        assert!(!rec.rebooted);
        let a = &tasks[0];
        assert_eq!(a.row.state, TaskState::Queued);
        assert_eq!(a.row.total, Some(20));
        assert_eq!(a.row.headers, vec![("A".to_string(), "b".to_string())]);
        let mut ranges = a.ranges.clone();
        ranges.sort_by_key(|r| r.start);
        assert_eq!(ranges[0].written, 7);
        assert_eq!(ranges[0].durable, 2);
    }

    #[test]
    fn publish_marks_are_committed_and_survive_a_close_that_does_not_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (s, _, _) = Store::open(dir.path()).unwrap();
            assert!(s.device().is_some());
            s.insert_tasks(&[row("a", 1)]).unwrap();
            s.mark_publishing(&[("a", "1:2:3@4:5")]).unwrap();
            s.sync_wal().unwrap();
        }
        let wal = dir.path().join(format!("{DB_FILE}-wal"));
        assert!(wal.metadata().unwrap().len() > 0, "closing leaves the WAL to the next open");
        let (s, tasks, _) = Store::open(dir.path()).unwrap();
        assert_eq!(tasks[0].row.id, "a");
        // The mark was read back (and, its destination not being that file, turned back into the
        // part file's identity): the commit outlived a close that left it in the WAL.
        let part: Option<String> = s.lock().query_row("SELECT part_file FROM tasks WHERE id = 'a'", [], |r| r.get(0)).unwrap();
        assert_eq!(part.as_deref(), Some("1:2:3"));
        drop(s);
        let (_, read) = Store::open_read_only(dir.path()).unwrap();
        assert_eq!(read.len(), 1, "a reader sees what the WAL holds");
    }

    #[test]
    fn a_group_of_marks_and_completions_reaches_exactly_its_rows_whatever_their_ids() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _, _) = Store::open(dir.path()).unwrap();
        let ids = ["plain", "quote\"d", "back\\slash", "ünï \u{1F600}", "a\tb", "other"];
        s.insert_tasks(&ids.iter().enumerate().map(|(i, id)| row(id, i as i64 + 1)).collect::<Vec<_>>()).unwrap();
        {
            let mut c = s.lock();
            let t = c.transaction().unwrap();
            tx::replace_ranges(&t, ids[1], &[SegmentRow { start: 0, end: 10, written: 9, durable: 3 }]).unwrap();
            tx::replace_ranges(&t, "other", &[SegmentRow { start: 0, end: 10, written: 9, durable: 3 }]).unwrap();
            t.commit().unwrap();
        }
        let group = &ids[..5];
        let marks: Vec<(&str, String)> = group.iter().map(|id| (*id, format!("m-{id}"))).collect();
        s.mark_publishing(&marks.iter().map(|(id, m)| (*id, m.as_str())).collect::<Vec<_>>()).unwrap();
        let part_of =
            |id: &str| -> Option<String> { s.lock().query_row("SELECT part_file FROM tasks WHERE id = ?1", [id], |r| r.get(0)).unwrap() };
        for id in group {
            assert_eq!(part_of(id), Some(format!("m-{id}")), "{id:?}");
        }
        assert_eq!(part_of("other"), None);
        let done: Vec<(&str, u64)> = group.iter().enumerate().map(|(i, id)| (*id, 1000 + i as u64)).collect();
        s.complete_many(&done).unwrap();
        drop(s);
        let (_s, tasks, _) = Store::open(dir.path()).unwrap();
        for t in &tasks {
            if let Some(i) = group.iter().position(|id| *id == t.row.id) {
                assert_eq!(t.row.state, TaskState::Completed, "{:?}", t.row.id);
                assert_eq!((t.row.bytes, t.row.total), (1000 + i as u64, Some(1000 + i as u64)));
                assert!(t.ranges.is_empty(), "{:?}", t.row.id);
            } else {
                assert_eq!(t.row.state, TaskState::Queued);
                assert_eq!(t.ranges.len(), 1, "another task's journal stays");
            }
        }
    }

    #[test]
    fn the_unused_destination_index_is_dropped_from_older_tables() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (s, _, _) = Store::open(dir.path()).unwrap();
            s.insert_tasks(&[row("a", 1)]).unwrap();
            s.lock().execute_batch("CREATE INDEX tasks_destination ON tasks(destination)").unwrap();
        }
        let (s, tasks, _) = Store::open(dir.path()).unwrap();
        assert_eq!(tasks.len(), 1);
        let n: i64 = s.lock().query_row("SELECT COUNT(*) FROM sqlite_master WHERE name = 'tasks_destination'", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn a_new_table_is_built_aside_and_a_half_built_one_is_thrown_away() {
        let dir = tempfile::tempdir().unwrap();
        // What a process killed while building a table leaves: garbage under the temporary names.
        std::fs::write(dir.path().join(NEW_DB_FILE), b"half a database").unwrap();
        std::fs::write(dir.path().join(format!("{NEW_DB_FILE}-wal")), b"half a log").unwrap();
        {
            let (s, tasks, _) = Store::open(dir.path()).unwrap();
            assert!(tasks.is_empty());
            let mode: String = s.lock().pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
            assert_eq!(mode, "wal");
            let v: i64 = s.lock().pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
            assert_eq!(v, SCHEMA_VERSION);
            s.insert_tasks(&[row("a", 1)]).unwrap();
        }
        assert!(!dir.path().join(NEW_DB_FILE).exists());
        assert!(!dir.path().join(format!("{NEW_DB_FILE}-wal")).exists());
        // An existing table is opened, never rebuilt.
        let (_s, tasks, _) = Store::open(dir.path()).unwrap();
        assert_eq!(tasks.len(), 1);
    }

    #[test]
    fn a_table_that_cannot_be_built_aside_is_created_in_place() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(NEW_DB_FILE)).unwrap();
        let (s, _, _) = Store::open(dir.path()).unwrap();
        s.insert_tasks(&[row("a", 1)]).unwrap();
        drop(s);
        let (_s, tasks, _) = Store::open(dir.path()).unwrap();
        assert_eq!(tasks.len(), 1);
    }

    #[test]
    fn a_log_without_its_database_is_left_to_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (s, _, _) = Store::open(dir.path()).unwrap();
            s.insert_tasks(&[row("a", 1)]).unwrap();
        }
        // The close left the rows in the WAL (no checkpoint on close); without the database file
        // the table is created in place, as SQLite always did, and never built aside over the WAL.
        let wal = dir.path().join(format!("{DB_FILE}-wal"));
        assert!(wal.exists());
        std::fs::remove_file(dir.path().join(DB_FILE)).unwrap();
        let (_s, _tasks, _) = Store::open(dir.path()).unwrap();
        assert!(!dir.path().join(NEW_DB_FILE).exists());
    }

    #[test]
    fn a_completion_drops_its_journal_and_only_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _, _) = Store::open(dir.path()).unwrap();
        s.insert_tasks(&[row("a", 1), row("b", 2), row("c", 3)]).unwrap();
        // No journal anywhere: completions still land.
        s.complete_many(&[("c", 7)]).unwrap();
        {
            let mut c = s.lock();
            let t = c.transaction().unwrap();
            tx::replace_ranges(&t, "a", &[SegmentRow { start: 0, end: 10, written: 9, durable: 3 }]).unwrap();
            tx::replace_ranges(&t, "b", &[SegmentRow { start: 0, end: 10, written: 5, durable: 5 }]).unwrap();
            t.commit().unwrap();
        }
        s.complete_many(&[("a", 10)]).unwrap();
        let journal: Vec<String> = {
            let c = s.lock();
            let mut q = c.prepare("SELECT task_id FROM ranges").unwrap();
            q.query_map([], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect()
        };
        assert_eq!(journal, vec!["b".to_string()]);
        drop(s);
        let (_s, tasks, _) = Store::open(dir.path()).unwrap();
        let state = |id: &str| tasks.iter().find(|t| t.row.id == id).map(|t| (t.row.state, t.row.bytes)).unwrap();
        assert_eq!(state("a"), (TaskState::Completed, 10));
        assert_eq!(state("c"), (TaskState::Completed, 7));
        assert_eq!(state("b").0, TaskState::Queued);
    }

    #[test]
    fn a_reboot_keeps_only_durable_offsets() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (s, _, _) = Store::open(dir.path()).unwrap();
            s.insert_tasks(&[row("a", 1)]).unwrap();
            let mut c = s.lock();
            let t = c.transaction().unwrap();
            tx::replace_ranges(&t, "a", &[SegmentRow { start: 0, end: 10, written: 9, durable: 3 }]).unwrap();
            t.execute("UPDATE meta SET value = 'another-boot' WHERE key = 'boot_id'", []).unwrap();
            t.commit().unwrap();
        }
        let (_s, tasks, rec) = Store::open(dir.path()).unwrap();
        assert!(rec.rebooted);
        assert_eq!(tasks[0].ranges[0].written, 3);
    }

    #[test]
    fn a_schema_1_table_is_migrated_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (s, _, _) = Store::open(dir.path()).unwrap();
            s.insert_tasks(&[row("a", 1)]).unwrap();
            s.lock().execute_batch("ALTER TABLE tasks DROP COLUMN part_file; PRAGMA user_version = 1;").unwrap();
        }
        let (_r, tasks) = Store::open_read_only(dir.path()).unwrap();
        assert_eq!(tasks.len(), 1, "a reader sees a schema 1 table");
        let (s, tasks, _) = Store::open(dir.path()).unwrap();
        assert_eq!(tasks.len(), 1);
        assert_eq!(tasks[0].row.part_file, None);
        let v: i64 = s.lock().pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }

    #[test]
    fn a_second_process_is_locked_out_but_may_read() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _, _) = Store::open(dir.path()).unwrap();
        s.insert_tasks(&[row("a", 1)]).unwrap();
        // flock is per open file description, so a second open in this process conflicts too.
        assert_eq!(Store::open(dir.path()).unwrap_err().code(), ErrorCode::StateDirLocked);
        let (_r, tasks) = Store::open_read_only(dir.path()).unwrap();
        assert_eq!(tasks.len(), 1);
    }
}
