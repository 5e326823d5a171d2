//! The task table's own transactions: enqueue, state changes, completions and publish marks.

use super::*;

impl Store {
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
        lease_tx::forget(&tx, id)?;
        tx.execute("DELETE FROM tasks WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(())
    }
}
