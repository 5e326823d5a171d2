//! The task table's own transactions: enqueue, state changes, completions and publish marks.

use super::*;

impl Store {
    /// Inserts new tasks in one transaction, with the sequence numbers they carry (the counter of
    /// [`tx::alloc_seq`] moves past them).
    pub fn insert_tasks(&self, rows: &[TaskRow]) -> Result<()> {
        self.write(|t| {
            tx::insert_tasks(t, rows)?;
            let last = rows.iter().map(|t| t.seq).max().unwrap_or(0);
            t.prepare_cached("UPDATE clock SET next_seq = MAX(next_seq, ?1) WHERE id = 0")?.execute([last + 1])?;
            Ok(())
        })
    }

    /// Records a state change (and the error, and the byte count).
    pub fn set_state(&self, id: &str, state: TaskState, error: Option<&TaskError>, bytes: u64) -> Result<()> {
        self.write(|t| tx::set_state(t, id, state, error, bytes))
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

    /// Changes a task's network policy.
    pub fn set_network_policy(&self, id: &str, policy: NetworkPolicy) -> Result<()> {
        self.write(|t| tx::set_network_policy(t, id, policy))
    }

    /// Changes a task's own bandwidth cap.
    pub fn set_rate_limit(&self, id: &str, bytes_per_sec: Option<u64>) -> Result<()> {
        self.write(|t| tx::set_rate_limit(t, id, bytes_per_sec))
    }

    /// Changes a task's priority.
    pub fn set_priority(&self, id: &str, priority: i32) -> Result<()> {
        self.write(|t| tx::set_priority(t, id, priority))
    }

    /// Replaces a task's URL and request headers (fresh credentials).
    pub fn set_access(&self, id: &str, url: &str, headers: &[(String, String)]) -> Result<()> {
        self.write(|t| tx::set_access(t, id, url, headers))
    }

    /// Deletes a task and its journal.
    pub fn delete_task(&self, id: &str) -> Result<()> {
        self.write(|t| tx::delete_task(t, id))
    }
}
