//! Leases: byte ranges handed to the OS to fetch (an iOS background session, an Android job).
//!
//! A lease row is written in the same transaction as the journal layout that gives its range a
//! segment of its own, so a process killed right after a hand-off still knows every lease. Rows
//! outlive the lease (committed or released) until the task is deleted or starts over, so that a
//! chunk delivered twice is recognised as already committed, and a lease id is never handed out
//! twice: ids are `<table id>-<n>`, the table's random id fixed when the first lease is made and
//! `n` counted in the table.

use super::*;

/// Where a lease stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseState {
    /// The OS is fetching it.
    Live,
    /// Its bytes are in the part file, synced and journaled.
    Committed,
    /// It ended without its bytes (the OS task failed, vanished, was taken back or cancelled).
    Released,
}

impl LeaseState {
    fn as_i64(self) -> i64 {
        match self {
            LeaseState::Live => 0,
            LeaseState::Committed => 1,
            LeaseState::Released => 2,
        }
    }

    fn from_i64(n: i64) -> LeaseState {
        match n {
            0 => LeaseState::Live,
            1 => LeaseState::Committed,
            _ => LeaseState::Released,
        }
    }
}

/// A persisted lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRow {
    /// Unique, never reused.
    pub id: String,
    /// The task it fetches for.
    pub task_id: String,
    /// First byte.
    pub start: u64,
    /// One past the last byte (for a whole-file lease of unknown length: `u64::MAX`).
    pub end: u64,
    /// The whole resource in one plain `GET` (no ranges, or no strong validator).
    pub whole: bool,
    /// Where it stands.
    pub state: LeaseState,
    /// When it was made, ms since the epoch.
    pub created_ms: i64,
}

/// Creates the lease table where it is missing. Older versions of ferry ignore it, so it needs no
/// schema version of its own.
pub(super) fn create_table(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS leases (
             id TEXT PRIMARY KEY,
             task_id TEXT NOT NULL,
             start INTEGER NOT NULL,
             end_ INTEGER NOT NULL,
             whole INTEGER NOT NULL,
             state INTEGER NOT NULL,
             created_ms INTEGER NOT NULL
         );
         CREATE INDEX IF NOT EXISTS leases_task ON leases (task_id);",
    )?;
    Ok(())
}

fn lease_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<LeaseRow> {
    Ok(LeaseRow {
        id: r.get(0)?,
        task_id: r.get(1)?,
        start: u(r.get(2)?),
        end: r.get::<_, i64>(3).map(|e| if e < 0 { u64::MAX } else { e as u64 })?,
        whole: r.get(4)?,
        state: LeaseState::from_i64(r.get(5)?),
        created_ms: r.get(6)?,
    })
}

impl Store {
    /// Every lease still on record (live, committed or released), by task.
    pub fn leases(&self) -> Result<Vec<LeaseRow>> {
        let conn = self.conn.lock();
        let mut stmt =
            conn.prepare_cached("SELECT id, task_id, start, end_, whole, state, created_ms FROM leases ORDER BY task_id, start")?;
        let rows = stmt.query_map([], lease_of)?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// A task's live leases.
    pub fn live_leases_of(&self, task_id: &str) -> Result<Vec<LeaseRow>> {
        let conn = self.conn.lock();
        let mut stmt =
            conn.prepare_cached("SELECT id, task_id, start, end_, whole, state, created_ms FROM leases WHERE task_id = ?1 AND state = 0")?;
        let rows = stmt.query_map([task_id], lease_of)?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// One lease.
    pub fn lease(&self, id: &str) -> Result<Option<LeaseRow>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached("SELECT id, task_id, start, end_, whole, state, created_ms FROM leases WHERE id = ?1")?;
        Ok(stmt.query_row([id], lease_of).optional()?)
    }
}

/// Statements of the lease table, inside a caller's transaction.
pub mod lease_tx {
    use super::*;

    /// `n` fresh lease ids, never handed out before by this table.
    pub fn new_ids(tx: &Transaction<'_>, n: usize) -> Result<Vec<String>> {
        let table: String = match tx.query_row("SELECT value FROM meta WHERE key = 'table_id'", [], |r| r.get(0)).optional()? {
            Some(id) => id,
            None => {
                let id = format!("{:08x}", rand::random::<u32>());
                tx.execute("INSERT INTO meta(key, value) VALUES ('table_id', ?1)", [&id])?;
                id
            }
        };
        let next: i64 =
            tx.query_row("SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'next_lease'", [], |r| r.get(0)).optional()?.unwrap_or(1);
        tx.execute(
            "INSERT INTO meta(key, value) VALUES ('next_lease', ?1) ON CONFLICT(key) DO UPDATE SET value = ?1",
            [(next + n as i64).to_string()],
        )?;
        Ok((0..n as i64).map(|k| format!("{table}-{}", next + k)).collect())
    }

    /// Records a new live lease.
    pub fn insert(tx: &Transaction<'_>, l: &LeaseRow) -> Result<()> {
        let end = if l.end == u64::MAX { -1 } else { l.end as i64 };
        tx.prepare_cached("INSERT INTO leases (id, task_id, start, end_, whole, state, created_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?
            .execute(params![l.id, l.task_id, l.start as i64, end, l.whole, l.state.as_i64(), l.created_ms])?;
        Ok(())
    }

    /// Moves a lease on; only a live lease moves (a committed one stays committed).
    pub fn set_state(tx: &Transaction<'_>, id: &str, state: LeaseState) -> Result<bool> {
        let n = tx.prepare_cached("UPDATE leases SET state = ?2 WHERE id = ?1 AND state = 0")?.execute(params![id, state.as_i64()])?;
        Ok(n == 1)
    }

    /// Releases every live lease of a task; returns their ids.
    pub fn release_all(tx: &Transaction<'_>, task_id: &str) -> Result<Vec<String>> {
        let ids = {
            let mut stmt = tx.prepare_cached("SELECT id FROM leases WHERE task_id = ?1 AND state = 0")?;
            let ids = stmt.query_map([task_id], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
            ids
        };
        tx.prepare_cached("UPDATE leases SET state = 2 WHERE task_id = ?1 AND state = 0")?.execute([task_id])?;
        Ok(ids)
    }

    /// Forgets every lease of a task (deleted, or starting over: its old chunks must not be taken).
    pub fn forget(tx: &Transaction<'_>, task_id: &str) -> Result<()> {
        tx.prepare_cached("DELETE FROM leases WHERE task_id = ?1")?.execute([task_id])?;
        Ok(())
    }
}
