//! Fresh credentials for a run: asked of the host after a 401 or 403, and before a run resumes
//! bytes when the configuration says so. A refresh puts a new URL or new headers in place and the
//! run goes on from its bytes; the validators, as on every resume, decide whether the new URL
//! serves the same resource.

use super::*;
use crate::engine::model::credentials::{refresh_failed, Access, Credentials, RefreshCause};

/// Refreshes a run may make without a byte of progress between them before a denial is final: a
/// source that hands out credentials the server keeps refusing must not loop.
const MAX_REFRESHES: u32 = 3;

impl Run {
    /// After `denied` (a 401 or 403): fresh credentials in place (`Ok`), or how the run ends: the
    /// denial itself when there is no source or it gave up, `credentials_refresh_failed` when it
    /// threw, hung or gave unusable credentials.
    pub(super) async fn refresh_after(&mut self, denied: Error) -> Result<(), Step> {
        let bytes = self.task.live.bytes.load(Ordering::Relaxed);
        if bytes > self.refresh_mark {
            self.refreshes = 0;
            self.refresh_mark = bytes;
        }
        if self.refreshes >= MAX_REFRESHES {
            return Err(Step::Fail(denied.context(&format!("still denied after {MAX_REFRESHES} credential refreshes"))));
        }
        if self.adopt_stored_access() {
            self.refreshes += 1;
            self.fresh_next = true;
            return Ok(());
        }
        let status = denied.http_status().unwrap_or(403);
        if !self.ask(RefreshCause::Denied(status)).await? {
            return Err(Step::Fail(denied));
        }
        self.refreshes += 1;
        self.fresh_next = true;
        Ok(())
    }

    /// Before a run that resumes bytes, when the configuration asks for it.
    pub(super) async fn refresh_before_resume(&mut self) -> Result<(), Step> {
        if self.config.refresh_before_resume && self.resume.as_ref().is_some_and(|r| r.map.written_bytes() > 0) {
            self.ask(RefreshCause::Resuming).await?;
        }
        Ok(())
    }

    /// The ranges to go on from after a refresh: what the journal holds now, with the leases the
    /// OS still fetches. `false` when there is nothing to go on from (the run starts again).
    pub(super) fn resume_after_refresh(&mut self) -> bool {
        if self.part.is_none() {
            return false;
        }
        let g = self.task.inner.lock();
        let Some(mut r) = usable_journal(&g.resource, &g.journal) else { return false };
        // The leases were placed when the run opened; one that no longer fits was released then.
        place_leases(&mut r.map, &g.leases);
        self.resume = Some(r);
        true
    }

    /// Takes the URL and headers the task table holds for this task when they differ from the ones
    /// this run used: another process gave fresh credentials (`update_credentials` there) while
    /// this one ran it. Whether it did.
    fn adopt_stored_access(&self) -> bool {
        if !self.task.persisted {
            return false;
        }
        let Ok(Some((stored, _))) = self.env.store.read_task(self.task.spec.id.as_str()) else { return false };
        let row = stored.row;
        let current = self.task.access();
        let (url, headers) = self.task.target(&current);
        if row.seq != self.task.seq || (row.url == url.as_str() && row.headers == headers) {
            return false;
        }
        let Ok(url) = url::Url::parse(&row.url) else { return false };
        self.task.inner.lock().access = Some(Arc::new(Access { url, headers: row.headers }));
        tracing::info!(task = %self.task.spec.id, "credentials another process stored are in place");
        true
    }

    /// Asks the source. `Ok(true)`: credentials given and in place; `Ok(false)`: no source, or it
    /// gave up.
    async fn ask(&mut self, cause: RefreshCause) -> Result<bool, Step> {
        let Some(source) = self.env.credentials.read().clone() else { return Ok(false) };
        let id = self.task.spec.id.as_str().to_string();
        let call = tokio::task::spawn_blocking(move || source.refresh(&id, cause));
        let limit = self.config.refresh_timeout;
        // A callback that never returns keeps its blocking thread; the task does not wait for it.
        let answer = tokio::select! {
            r = tokio::time::timeout(limit, call) => r,
            _ = self.stop.cancelled() => return Err(Step::Stopped),
        };
        let fresh = match answer {
            Err(_) => return Err(Step::Fail(refresh_failed(format!("no answer within {} ms", limit.as_millis())))),
            Ok(Err(_)) => return Err(Step::Fail(refresh_failed("the callback panicked"))),
            Ok(Ok(Err(message))) => return Err(Step::Fail(refresh_failed(message))),
            Ok(Ok(Ok(None))) => return Ok(false),
            Ok(Ok(Ok(Some(c)))) => c,
        };
        apply_credentials(&self.env, &self.task, &fresh).map_err(|e| Step::Fail(refresh_failed(e)))?;
        tracing::info!(task = %self.task.spec.id, "fresh credentials in place");
        Ok(true)
    }
}

/// Puts credentials in place for `task`: checked, stored with it (a later open, or another
/// process, asks with them too) and used from its next request on.
pub fn apply_credentials(env: &Env, task: &TaskEntry, c: &Credentials) -> Result<()> {
    let current = {
        let g = task.inner.lock();
        g.access.as_deref().cloned().unwrap_or_else(|| Access { url: task.spec.url.clone(), headers: task.spec.headers.clone() })
    };
    let next = c.apply(&current)?;
    if task.persisted {
        env.store.set_access(task.spec.id.as_str(), next.url.as_str(), &next.headers)?;
    }
    task.inner.lock().access = Some(Arc::new(next));
    Ok(())
}
