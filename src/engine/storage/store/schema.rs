//! The table's schema: building a new table aside, and migrating older ones.

use super::*;

/// Where a new task table is built before it takes its name.
pub(super) const NEW_DB_FILE: &str = "tasks.sqlite3.new";
/// Crash point (see [`crate::engine::storage::crash`]) between building a new task table and naming it.
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
pub(super) fn create_if_absent(dir: &Path) {
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

pub(super) fn build_aside(dir: &Path) -> Result<()> {
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
    crate::engine::storage::crash::point(CRASH_CREATED);
    std::fs::rename(&new, dir.join(DB_FILE)).map_err(|e| Error::io("naming the new task table", &e))?;
    Ok(())
}

pub(super) fn device_of(file: &File) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    file.metadata().ok().map(|m| m.dev())
}

pub(super) fn migrate(conn: &Connection) -> Result<()> {
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
    if version < 3 {
        // Several processes on one table (see `shared.rs`): every change another process must see
        // carries a revision from `clock`, so each process reads only what changed since it last
        // looked (`tasks_rev`); removed tasks leave a row in `gone`; `control` carries a pause,
        // cancel or remove asked of the process that runs the task; `clock.next_seq` hands out
        // sequence numbers no two processes share.
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE tasks ADD COLUMN rev INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE tasks ADD COLUMN control INTEGER;
             CREATE INDEX tasks_rev ON tasks (rev);
             CREATE TABLE clock (
                 id INTEGER PRIMARY KEY CHECK (id = 0),
                 rev INTEGER NOT NULL,
                 next_seq INTEGER NOT NULL,
                 gone_floor INTEGER NOT NULL
             );
             INSERT INTO clock (id, rev, next_seq, gone_floor) VALUES (0, 1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM tasks), 0);
             CREATE TABLE gone (rev INTEGER PRIMARY KEY, id TEXT NOT NULL, seq INTEGER NOT NULL, at_ms INTEGER NOT NULL);
             PRAGMA user_version = 3;
             COMMIT;",
        )?;
    }
    if version < 4 {
        // Which networks a task may use (`model::network`); older rows may use any.
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE tasks ADD COLUMN network_policy INTEGER NOT NULL DEFAULT 0;
             PRAGMA user_version = 4;
             COMMIT;",
        )?;
    }
    if version < 5 {
        // A task's own bandwidth cap (bytes per second), kept across reopens; NULL: none.
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE tasks ADD COLUMN rate_limit INTEGER;
             PRAGMA user_version = 5;
             COMMIT;",
        )?;
    }
    // Tables made before 2026-11-30 carry an index on the destination that no query uses; each
    // insert paid for it (a string b-tree insert, a few thousand instructions per task). Dropping
    // it changes nothing an older version relies on, so the schema version stays.
    conn.execute_batch("DROP INDEX IF EXISTS tasks_destination")?;
    Ok(())
}
