//! How a run ends: the journal settled and synced, the file verified and published, or the
//! partial kept for a resume.

use super::*;

impl Run {
    /// What every transfer does once its connections are gone: keep the journal in memory, settle
    /// it in the table, and close the run to late journal commits.
    pub(super) async fn end_transfer(&mut self, shared: &Arc<RunShared>, result: Result<(), Step>) -> Result<Done, Step> {
        self.slots.truncate(1);
        {
            // Under the entry's lock: an ingest commits either into the map before the rows are
            // taken, or into the journal after.
            let mut g = self.task.inner.lock();
            if let Some(run) = g.run.as_mut() {
                run.ranges = None;
            }
            g.journal = shared.map.lock().rows();
        }
        let result = self.settle_journal(shared, result).await;
        shared.closed.store(true, Ordering::Release);
        result
    }

    /// Final journal writes of a run: sync and record everything on a stop, record on a failure.
    pub(super) async fn settle_journal(&self, shared: &Arc<RunShared>, result: Result<(), Step>) -> Result<Done, Step> {
        let total = shared.resource.0;
        match result {
            Ok(()) => {
                let hashed = shared.hasher.lock().take();
                Ok(Done { total, hashed })
            }
            Err(stop @ (Step::Stopped | Step::HandedOff)) => {
                let cancelled = self.task.inner.lock().run.as_ref().and_then(|r| r.reason) == Some(StopReason::Cancel);
                if !cancelled {
                    self.sync_durable(shared).await?;
                }
                Err(stop)
            }
            Err(Step::Fail(e)) => {
                self.save_journal(shared)?;
                Err(Step::Fail(e))
            }
            Err(other) => Err(other),
        }
    }

    /// Writes the whole journal now (layout included if it was never written).
    pub(super) fn save_journal(&self, shared: &RunShared) -> Result<()> {
        if !self.task.persisted {
            return Ok(());
        }
        if let Some(part) = &self.part {
            part.ensure_named()?;
        }
        let mut conn = self.env.store.lock();
        let t = conn.transaction()?;
        shared.persist(&t, true, None)?;
        t.commit()?;
        Ok(())
    }

    /// Syncs the part file, then records the offsets written before the sync as durable.
    pub(super) async fn sync_durable(&self, shared: &Arc<RunShared>) -> Result<()> {
        let Some(part) = self.part.clone() else { return Ok(()) };
        part.ensure_named()?;
        let snapshot = shared.map.lock().rows();
        tokio::task::spawn_blocking(move || part.sync_durably()).await.map_err(|_| Error::internal("sync task failed"))??;
        shared.map.lock().mark_durable(&snapshot);
        if self.task.persisted {
            let durable: Vec<SegmentRow> = snapshot.iter().map(|r| SegmentRow { durable: r.written, ..*r }).collect();
            let mut conn = self.env.store.lock();
            let t = conn.transaction()?;
            shared.persist(&t, true, Some(&durable))?;
            t.commit()?;
        }
        let mut g = self.task.inner.lock();
        // Once the transfer has ended (`end_transfer`), the entry's journal is the record: an
        // ingest may have moved it on since.
        let rows = shared.map.lock().rows();
        if g.run.as_ref().is_some_and(|r| r.ranges.is_some()) {
            g.journal = rows;
        } else {
            for r in g.journal.iter_mut() {
                if let Some(m) = rows.iter().find(|m| m.start == r.start && m.end == r.end) {
                    r.durable = r.durable.max(m.durable.min(r.written));
                }
            }
        }
        Ok(())
    }

    pub(super) async fn finish(&mut self, done: Done) -> Outcome {
        // The network part is over: give the connection slots back and let the next task start.
        self.slots.clear();
        if let Some(f) = self.transferred.take() {
            f();
        }
        match &self.task.spec.output {
            Output::File(dest) => {
                let part = self.part.take().expect("file runs have a part file");
                let dest = dest.clone();
                let expecting = self.expecting.take();
                match self.publish(part, dest, done, expecting).await {
                    Ok((bytes, recorded)) => {
                        self.task.inner.lock().journal.clear();
                        Outcome::Completed { bytes, recorded }
                    }
                    Err(e) => self.fail(e),
                }
            }
            Output::Memory { .. } => {
                let bytes = self.memory.as_ref().map(|m| m.take()).unwrap_or_default();
                let n = bytes.len() as u64;
                self.task.inner.lock().memory = Some(bytes);
                Outcome::Completed { bytes: n, recorded: false }
            }
            Output::Stream(_) => Outcome::Completed { bytes: done.total, recorded: false },
            // Never started (see `run`).
            Output::Unresolved(stored) => self.fail(crate::engine::model::roots::unknown_root(stored)),
        }
    }

    /// Verifies and publishes the part file. Small files go through the group commit of
    /// [`publisher`]; large ones (and checksum work) run on a blocking thread of their own.
    /// Returns the size and whether the completion is already recorded in the task table.
    pub(super) async fn publish(
        &self,
        part: Arc<PartFile>,
        dest: std::path::PathBuf,
        done: Done,
        expecting: Option<publisher::Expecting>,
    ) -> Result<(u64, bool)> {
        let sha = self.task.spec.sha256.clone();
        let overwrite = self.task.spec.overwrite;
        let Done { total, hashed } = done;
        let small = total <= publisher::SMALL_FILE;
        let check = {
            let part = part.clone();
            move || {
                part_file::verify(
                    &part,
                    &Publish { destination: &dest, expected_size: Some(total), sha256: sha.as_deref(), hashed, overwrite },
                )
            }
        };
        let dest = self.task.spec.output.path().cloned().expect("file output");
        if small {
            let identity = check()?;
            let len = identity.len;
            let record = self.task.persisted.then(|| publisher::Record {
                store: self.env.store.clone(),
                id: self.task.spec.id.as_str().to_string(),
                bytes: len,
                mark: identity.publish_mark(),
            });
            let recorded = publisher::global().publish(part, dest, overwrite, record, expecting).await?;
            return Ok((len, recorded));
        }
        drop(expecting);
        let mark = self.task.persisted.then(|| (self.env.store.clone(), self.task.spec.id.as_str().to_string()));
        tokio::task::spawn_blocking(move || {
            let identity = check()?;
            part_file::commit(&part, &dest, overwrite, || match &mark {
                Some((store, id)) => {
                    store.mark_publishing(&[(id, &identity.publish_mark())])?;
                    store.sync_wal()
                }
                None => Ok(()),
            })?;
            Ok((identity.len, false))
        })
        .await
        .map_err(|_| Error::internal("publishing failed"))?
    }

    /// Fails the run; a part file with nothing resumable in it is removed.
    pub(super) fn fail(&mut self, e: Error) -> Outcome {
        if let (Output::File(dest), Some(part)) = (&self.task.spec.output, self.part.take()) {
            let resumable = self.task.inner.lock().journal.iter().any(|r| r.written > r.start);
            // A kept partial needs its name; one that cannot get it is lost like a removed one.
            let kept = resumable && part.ensure_named().is_ok();
            drop(part);
            if !kept {
                let _ = std::fs::remove_file(part_file::part_path(dest));
            }
        }
        Outcome::Failed(e)
    }
}
