//! What opening does about the processes that died: their running tasks go back to queued, the
//! completions they did not record are recorded, and after a reboot only synced offsets are kept.
//! A task whose owner is alive (its byte in `owners` is locked) is left to it: every step takes the
//! lock of each task it changes for the length of its transaction, so no process can start running
//! a task while it is being recovered.

use super::*;

/// Tombstones of removed tasks are kept this long; a process that has not looked at the table for
/// longer reads it whole (see [`Store::changes_since`]).
const GONE_KEPT_MS: i64 = 24 * 3600 * 1000;

/// Releases the task locks taken for a transaction.
struct Held<'a> {
    owners: &'a Owners,
    seqs: Vec<i64>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        for seq in self.seqs.drain(..) {
            self.owners.release(seq);
        }
    }
}

impl Store {
    pub(super) fn recover(&self) -> Result<Recovery> {
        let owners = self.owners.as_deref().ok_or_else(|| Error::internal("recovering a read-only table"))?;
        let mut held = Held { owners, seqs: Vec::new() };
        let mut conn = self.conn.lock();
        let tx = conn.transaction()?;
        let stored: Option<String> = tx.query_row("SELECT value FROM meta WHERE key = 'boot_id'", [], |r| r.get(0)).optional()?;
        let current = boot::current_boot_id();
        let rebooted = match (&stored, &current) {
            (Some(a), Some(b)) => a != b,
            (None, _) => false,
            (Some(_), None) => true,
        };
        // A task whose ranges the OS is fetching stays running: its leases outlive the process.
        let active: Vec<(String, i64, i64)> = {
            let mut stmt = tx.prepare(
                "SELECT id, seq, state FROM tasks WHERE state IN (?1, ?2)
                     AND id NOT IN (SELECT task_id FROM leases WHERE state = 0)",
            )?;
            let rows = stmt
                .query_map(params![TaskState::Queued.as_i64(), TaskState::Running.as_i64()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut live: Vec<String> = Vec::new();
        let mut orphans: Vec<String> = Vec::new();
        for (id, seq, state) in active {
            if owners.try_own(seq)? {
                held.seqs.push(seq);
                if state == TaskState::Running.as_i64() {
                    orphans.push(id);
                }
            } else {
                live.push(id);
            }
        }
        if rebooted {
            // No process of the last boot is alive; one that started since and found a task
            // orphaned runs it from offsets that are synced already.
            let live = serde_json::to_string(&live).unwrap_or_else(|_| "[]".into());
            tx.execute("UPDATE ranges SET written = durable WHERE task_id NOT IN (SELECT value FROM json_each(?1))", [live])?;
        }
        if let Some(id) = &current {
            tx.execute("INSERT INTO meta(key, value) VALUES ('boot_id', ?1) ON CONFLICT(key) DO UPDATE SET value = ?1", [id])?;
        }
        for id in &orphans {
            tx::requeue(&tx, id)?;
        }
        tx.commit()?;
        Ok(Recovery { rebooted, recovered_running: orphans.len(), published: 0 })
    }

    /// Finishes the completions a killed process left half done: a task with a publish mark whose
    /// destination is the very file it renamed there (same device, inode, birth, length and
    /// modification time) is completed.
    /// Any other mark is stale (the rename never happened, or the file was replaced since): it goes
    /// back to the plain part file identity, and the task resumes or fails as usual. A task whose
    /// owner is alive may be between its mark and its rename: it is left alone.
    pub(super) fn reconcile_published(&self) -> Result<usize> {
        let owners = self.owners.as_deref().ok_or_else(|| Error::internal("recovering a read-only table"))?;
        let mut held = Held { owners, seqs: Vec::new() };
        let mut conn = self.conn.lock();
        let marked: Vec<(String, i64, String, String)> = {
            let mut stmt =
                conn.prepare("SELECT id, seq, destination, part_file FROM tasks WHERE part_file LIKE '%@%' AND state NOT IN (?1, ?2)")?;
            let rows = stmt.query_map(params![TaskState::Completed.as_i64(), TaskState::Cancelled.as_i64()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        if marked.is_empty() {
            return Ok(0);
        }
        let tx = conn.transaction()?;
        let mut published = 0;
        for (id, seq, destination, mark) in marked {
            if !owners.try_own(seq)? {
                continue;
            }
            held.seqs.push(seq);
            if settle_mark(&tx, &self.roots, &id, &destination, &mark)? {
                published += 1;
            }
        }
        tx.commit()?;
        Ok(published)
    }

    /// [`Store::reconcile_published`] for one task whose process died while this one runs (the
    /// caller holds the task's lock): true when its file turned out to be in place and the task is
    /// now recorded completed.
    pub fn settle_publish(&self, id: &str) -> Result<bool> {
        self.write(|t| {
            let marked: Option<(String, String)> = t
                .query_row(
                    "SELECT destination, part_file FROM tasks WHERE id = ?1 AND part_file LIKE '%@%' AND state NOT IN (?2, ?3)",
                    params![id, TaskState::Completed.as_i64(), TaskState::Cancelled.as_i64()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            match marked {
                Some((destination, mark)) => settle_mark(t, &self.roots, id, &destination, &mark),
                None => Ok(false),
            }
        })
    }
}

/// Completes task `id` if its destination is the file its publish mark names; otherwise turns the
/// stale mark back into the part file's identity. True when completed. A destination relative to a
/// root that is not declared is left as it is, mark included, for an open that declares it.
fn settle_mark(tx: &Transaction<'_>, roots: &Roots, id: &str, destination: &str, mark: &str) -> Result<bool> {
    let Ok(destination) = roots.resolve(destination) else { return Ok(false) };
    match crate::engine::storage::part_file::identity_of(&destination) {
        Some(found) if found.publish_mark() == mark => {
            tracing::info!("{id}: its file is in place; recording the completion the last process did not");
            tx::complete(tx, id, found.len)?;
            Ok(true)
        }
        _ => {
            tx::set_part_file(tx, id, Some(crate::engine::storage::part_file::Identity::file_part(mark)))?;
            Ok(false)
        }
    }
}

impl Store {
    /// Forgets tombstones older than [`GONE_KEPT_MS`], remembering the newest revision forgotten.
    pub(super) fn trim_gone(&self) -> Result<()> {
        let mut conn = self.conn.lock();
        let cutoff = now_ms() - GONE_KEPT_MS;
        let old: bool = conn.query_row("SELECT EXISTS (SELECT 1 FROM gone WHERE at_ms < ?1)", [cutoff], |r| r.get(0))?;
        if old {
            let t = conn.transaction()?;
            t.execute(
                "UPDATE clock SET gone_floor = MAX(gone_floor, (SELECT MAX(rev) FROM gone WHERE at_ms < ?1)) WHERE id = 0",
                [cutoff],
            )?;
            t.execute("DELETE FROM gone WHERE at_ms < ?1", [cutoff])?;
            t.commit()?;
        }
        Ok(())
    }
}
