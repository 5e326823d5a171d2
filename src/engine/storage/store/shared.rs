//! What processes sharing the table tell each other through it.
//!
//! - Revisions: `clock.rev` counts the table's visible changes; every statement that changes what
//!   another process shows (a new task, a state, an error, a priority, the length, a control
//!   request) stamps its row with the next revision (`tx.rs`), and a removed task leaves its id in
//!   `gone` with one. The bytes done change at every journal commit and stamp nothing: a process
//!   reads them for the tasks it sees running elsewhere ([`Store::progress_of`]). A process remembers the revision it has seen and reads only the
//!   rows stamped later ([`Store::changes_since`], an index range), and only when another
//!   connection committed at all (`PRAGMA data_version`, [`Store::foreign_commits`]).
//! - Control: a pause, cancel or remove asked of a task that another process runs is written to
//!   the row's `control` column; the owner sees it with the row's next revision and applies it.
//! - Sequence numbers come from `clock.next_seq` inside the inserting transaction, so no two
//!   processes hand out the same one (a task's `seq` is its lock's offset in `owners`).

use super::*;

/// A request, written to the table, to the process that runs a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Pause it.
    Pause = 1,
    /// Cancel it.
    Cancel = 2,
    /// Remove it (its partial file too).
    Remove = 3,
    /// Remove it, and its file if it completes meanwhile.
    RemoveWithFile = 4,
}

impl Control {
    fn from_i64(v: i64) -> Option<Control> {
        match v {
            1 => Some(Control::Pause),
            2 => Some(Control::Cancel),
            3 => Some(Control::Remove),
            4 => Some(Control::RemoveWithFile),
            _ => None,
        }
    }
}

/// What changed in the table since a revision.
#[derive(Debug, Default)]
pub struct Changes {
    /// The revision these changes bring a reader to.
    pub rev: i64,
    /// Rows stamped after the revision asked about, with their control requests.
    pub rows: Vec<(TaskRow, Option<Control>)>,
    /// Tasks removed since (id and seq).
    pub gone: Vec<(String, i64)>,
    /// The revision asked about was older than the oldest tombstone kept: `rows` holds every task,
    /// and a task missing from it is gone.
    pub full: bool,
}

/// The table's current revision.
pub(super) fn current_rev(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("SELECT rev FROM clock WHERE id = 0", [], |r| r.get(0))?)
}

/// [`Store::changes_since`] inside a caller's transaction (an enqueue reads them under the write
/// lock, so that what it checks is the whole table).
pub fn changes(conn: &Connection, since: i64) -> Result<Changes> {
    let (rev, floor): (i64, i64) = conn.query_row("SELECT rev, gone_floor FROM clock WHERE id = 0", [], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let mut out = Changes { rev, ..Changes::default() };
    if rev <= since {
        return Ok(out);
    }
    out.full = since < floor;
    let filter = if out.full { "" } else { "WHERE rev > ?1" };
    let mut stmt = conn.prepare_cached(&format!("SELECT {}, control FROM tasks {filter}", row_columns(SCHEMA_VERSION)))?;
    let map = |r: &rusqlite::Row<'_>| Ok((read_row(r)?, r.get::<_, Option<i64>>(ROW_COLUMNS)?.and_then(Control::from_i64)));
    out.rows = if out.full { stmt.query_map([], map)? } else { stmt.query_map([since], map)? }.collect::<rusqlite::Result<_>>()?;
    if !out.full {
        let mut stmt = conn.prepare_cached("SELECT id, seq FROM gone WHERE rev > ?1 ORDER BY rev")?;
        out.gone = stmt.query_map([since], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
    }
    Ok(out)
}

/// Hands out `n` consecutive sequence numbers; returns the first.
pub fn alloc_seq(tx: &Transaction<'_>, n: usize) -> Result<i64> {
    let n = n as i64;
    Ok(tx.prepare_cached("UPDATE clock SET next_seq = next_seq + ?1 WHERE id = 0 RETURNING next_seq - ?1")?.query_row([n], |r| r.get(0))?)
}

impl Store {
    /// Whether another connection (another process, or a reader) committed to the table since the
    /// last call. Costs no table read.
    pub fn foreign_commits(&self) -> bool {
        let v: i64 = match self.conn.lock().pragma_query_value(None, "data_version", |r| r.get(0)) {
            Ok(v) => v,
            Err(_) => return true,
        };
        self.data_version.swap(v, Ordering::AcqRel) != v
    }

    /// What changed since revision `since`, read from one snapshot.
    pub fn changes_since(&self, since: i64) -> Result<Changes> {
        let mut conn = self.conn.lock();
        let t = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let out = changes(&t, since)?;
        t.commit()?;
        Ok(out)
    }

    /// One task with its journal and its control request, as the table holds it now.
    pub fn read_task(&self, id: &str) -> Result<Option<(StoredTask, Option<Control>)>> {
        let mut conn = self.conn.lock();
        let t = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let found = t
            .query_row(&format!("SELECT {}, control FROM tasks WHERE id = ?1", row_columns(SCHEMA_VERSION)), [id], |r| {
                Ok((read_row(r)?, r.get::<_, Option<i64>>(ROW_COLUMNS)?.and_then(Control::from_i64)))
            })
            .optional()?;
        let Some((row, control)) = found else { return Ok(None) };
        let mut stmt = t.prepare_cached("SELECT start, end_, written, durable FROM ranges WHERE task_id = ?1 ORDER BY start")?;
        let ranges = stmt
            .query_map([id], |r| Ok(SegmentRow { start: u(r.get(0)?), end: u(r.get(1)?), written: u(r.get(2)?), durable: u(r.get(3)?) }))?
            .collect::<rusqlite::Result<_>>()?;
        drop(stmt);
        t.commit()?;
        Ok(Some((StoredTask { row, ranges }, control)))
    }

    /// The bytes done and length of tasks, as their owners' journals last recorded them (the
    /// progress of tasks other processes run; it stamps no revision).
    pub fn progress_of(&self, ids: &[&str]) -> Result<Vec<(u64, Option<u64>)>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached("SELECT bytes, total FROM tasks WHERE id = ?1")?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let found = stmt.query_row([id], |r| Ok((u(r.get(0)?), r.get::<_, Option<i64>>(1)?.map(u)))).optional()?;
            out.push(found.unwrap_or((0, None)));
        }
        Ok(out)
    }

    /// Asks the process that runs task `id` to pause, cancel or remove it. False when the task is
    /// no longer queued or running (nobody runs it: the caller may act on it itself).
    pub fn request_control(&self, id: &str, control: Control) -> Result<bool> {
        self.write(|t| tx::set_control(t, id, Some(control)))
    }

    /// Forgets task `id`'s control request (applied, or overtaken).
    pub fn clear_control(&self, id: &str) -> Result<()> {
        self.write(|t| tx::set_control(t, id, None).map(drop))
    }

    /// Records that task `id`, found running without a live owner, is queued again.
    pub fn requeue(&self, id: &str) -> Result<()> {
        self.write(|t| tx::requeue(t, id))
    }
}
