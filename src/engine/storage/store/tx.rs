//! Statements that run inside a caller's transaction, under [`Store::lock`]: the journal's
//! writes, which the runner and the publisher batch with their own.

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
