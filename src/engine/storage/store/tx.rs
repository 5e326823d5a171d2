//! Statements that run inside a caller's transaction, under [`Store::lock`]: the journal's
//! writes, which the runner and the publisher batch with their own.
//!
//! A statement that changes what other processes show stamps its row with the next revision and
//! advances `clock` (see `shared.rs`); the journal's range offsets and bytes done, part file
//! identities and publish marks stamp nothing (the bytes are read where they are shown).

pub use super::shared::{alloc_seq, changes};
use super::*;

/// The revision a row changed now is stamped with; [`touch`] must follow.
const NEXT_REV: &str = "(SELECT rev FROM clock WHERE id = 0) + 1";

/// Advances the table's revision past the rows just stamped with [`NEXT_REV`].
fn touch(tx: &Transaction<'_>) -> Result<()> {
    tx.prepare_cached("UPDATE clock SET rev = rev + 1 WHERE id = 0")?.execute([])?;
    Ok(())
}

/// Inserts new tasks (their `seq` from [`alloc_seq`]).
pub fn insert_tasks(tx: &Transaction<'_>, rows: &[TaskRow]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut stmt = tx.prepare_cached(&format!(
        "INSERT INTO tasks (id, seq, url, destination, headers, connections, sha256, priority, overwrite, state,
                            total, etag, last_modified, bytes, error_code, error_message, created_ms, updated_ms,
                            error_http_status, network_policy, rate_limit, rev)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, {NEXT_REV})"
    ))?;
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
            t.network_policy.as_i64(),
            t.rate_limit.map(cap_column),
        ])?;
    }
    touch(tx)
}

/// Records a state change (and the error, and the byte count).
pub fn set_state(tx: &Transaction<'_>, id: &str, state: TaskState, error: Option<&TaskError>, bytes: u64) -> Result<()> {
    tx.prepare_cached(&format!(
        "UPDATE tasks SET state = ?2, error_code = ?3, error_message = ?4, bytes = ?5, updated_ms = ?6,
                          error_http_status = ?7, rev = {NEXT_REV} WHERE id = ?1"
    ))?
    .execute(params![
        id,
        state.as_i64(),
        error.map(|e| e.code.as_u16() as i64),
        error.map(|e| e.message.clone()),
        bytes as i64,
        now_ms(),
        error.and_then(|e| e.http_status).map(i64::from)
    ])?;
    touch(tx)
}

/// Records that task `id`, found running without a live owner, is queued again.
pub fn requeue(tx: &Transaction<'_>, id: &str) -> Result<()> {
    tx.prepare_cached(&format!("UPDATE tasks SET state = ?2, updated_ms = ?3, rev = {NEXT_REV} WHERE id = ?1 AND state = ?4"))?
        .execute(params![id, TaskState::Queued.as_i64(), now_ms(), TaskState::Running.as_i64()])?;
    touch(tx)
}

/// Changes a task's network policy.
pub fn set_network_policy(tx: &Transaction<'_>, id: &str, policy: NetworkPolicy) -> Result<()> {
    tx.prepare_cached(&format!("UPDATE tasks SET network_policy = ?2, updated_ms = ?3, rev = {NEXT_REV} WHERE id = ?1"))?
        .execute(params![id, policy.as_i64(), now_ms()])?;
    touch(tx)
}

/// Changes a task's own bandwidth cap (`None`: none).
pub fn set_rate_limit(tx: &Transaction<'_>, id: &str, bytes_per_sec: Option<u64>) -> Result<()> {
    tx.prepare_cached(&format!("UPDATE tasks SET rate_limit = ?2, updated_ms = ?3, rev = {NEXT_REV} WHERE id = ?1"))?.execute(params![
        id,
        bytes_per_sec.map(cap_column),
        now_ms()
    ])?;
    touch(tx)
}

/// A cap as SQLite stores it (a signed 64-bit integer): beyond `i64::MAX` bytes a second is no cap
/// anyone can reach.
fn cap_column(bytes_per_sec: u64) -> i64 {
    i64::try_from(bytes_per_sec).unwrap_or(i64::MAX)
}

/// Changes a task's priority.
pub fn set_priority(tx: &Transaction<'_>, id: &str, priority: i32) -> Result<()> {
    tx.prepare_cached(&format!("UPDATE tasks SET priority = ?2, updated_ms = ?3, rev = {NEXT_REV} WHERE id = ?1"))?.execute(params![
        id,
        priority,
        now_ms()
    ])?;
    touch(tx)
}

/// Replaces a task's URL and request headers.
pub fn set_access(tx: &Transaction<'_>, id: &str, url: &str, headers: &[(String, String)]) -> Result<()> {
    let headers = serde_json::to_string(headers).unwrap_or_else(|_| "[]".into());
    tx.prepare_cached(&format!("UPDATE tasks SET url = ?2, headers = ?3, updated_ms = ?4, rev = {NEXT_REV} WHERE id = ?1"))?
        .execute(params![id, url, headers, now_ms()])?;
    touch(tx)
}

/// Sets (only on a queued or running task; returns whether it was one) or clears a control request.
pub fn set_control(tx: &Transaction<'_>, id: &str, control: Option<Control>) -> Result<bool> {
    let changed = match control {
        Some(c) => tx
            .prepare_cached(&format!("UPDATE tasks SET control = ?2, rev = {NEXT_REV} WHERE id = ?1 AND state IN (?3, ?4)"))?
            .execute(params![id, c as i64, TaskState::Queued.as_i64(), TaskState::Running.as_i64()])?,
        None => tx.prepare_cached("UPDATE tasks SET control = NULL WHERE id = ?1 AND control IS NOT NULL")?.execute([id])?,
    };
    if control.is_some() && changed > 0 {
        touch(tx)?;
    }
    Ok(changed > 0)
}

/// Deletes a task and its journal, leaving a tombstone for the other processes.
pub fn delete_task(tx: &Transaction<'_>, id: &str) -> Result<()> {
    tx.prepare_cached("DELETE FROM ranges WHERE task_id = ?1")?.execute([id])?;
    super::lease_tx::forget(tx, id)?;
    let seq: Option<i64> = tx.prepare_cached("DELETE FROM tasks WHERE id = ?1 RETURNING seq")?.query_row([id], |r| r.get(0)).optional()?;
    if let Some(seq) = seq {
        tx.prepare_cached(&format!("INSERT INTO gone (rev, id, seq, at_ms) VALUES ({NEXT_REV}, ?1, ?2, ?3)"))?.execute(params![
            id,
            seq,
            now_ms()
        ])?;
        touch(tx)?;
    }
    Ok(())
}

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

/// Records a completed task (size, no error); its journal is the caller's. Its publish mark stays:
/// it tells the file the task published from one a later download put at the same path.
pub fn record_completed(tx: &Transaction<'_>, id: &str, bytes: u64) -> Result<()> {
    tx.prepare_cached(&format!(
        "UPDATE tasks SET state = ?2, error_code = NULL, error_message = NULL, error_http_status = NULL, bytes = ?3,
                          total = ?3, updated_ms = ?4, control = NULL, rev = {NEXT_REV} WHERE id = ?1"
    ))?
    .execute(params![id, TaskState::Completed.as_i64(), bytes as i64, now_ms()])?;
    touch(tx)
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
    tx.prepare_cached(&format!(
        "UPDATE tasks SET total = ?2, etag = ?3, last_modified = ?4, updated_ms = ?5, rev = {NEXT_REV} WHERE id = ?1"
    ))?
    .execute(params![id, total.map(|t| t as i64), etag, last_modified, now_ms()])?;
    touch(tx)?;
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
/// queued anyway, so the first journal commit is soon enough). Only that start stamps a revision:
/// the bytes change at every journal commit, and the other processes read them for the tasks
/// they see running ([`Store::progress_of`]) instead of having every commit move the task in the
/// revision index.
pub fn set_bytes(tx: &Transaction<'_>, id: &str, bytes: u64) -> Result<()> {
    let started = tx
        .prepare_cached(&format!("UPDATE tasks SET state = ?2, rev = {NEXT_REV} WHERE id = ?1 AND state = ?3"))?
        .execute(params![id, TaskState::Running.as_i64(), TaskState::Queued.as_i64()])?;
    if started > 0 {
        touch(tx)?;
    }
    tx.prepare_cached("UPDATE tasks SET bytes = ?2 WHERE id = ?1")?.execute(params![id, bytes as i64])?;
    Ok(())
}
