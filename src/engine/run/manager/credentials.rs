//! Credentials that expire: the host's source of fresh ones, and the call that replaces a task's
//! URL or headers directly (see `model::credentials` for why and what the validators still decide).

use super::*;
use crate::engine::model::credentials::{CredentialSource, Credentials};

impl Manager {
    /// Sets (or with `None` removes) the source the engine asks for fresh credentials when a
    /// server answers 401 or 403, and before a resume when `Config::refresh_before_resume` is set.
    /// Without one, a 401 or 403 fails the task with `access_denied`, as before.
    pub fn set_credential_source(&self, source: Option<Arc<dyn CredentialSource>>) {
        *self.inner.env.credentials.write() = source;
    }

    /// Replaces a task's URL (a newly signed one for the same resource) or its request headers
    /// (a new token), stored with the task and used from its next request on; a running task's
    /// connections take them at their next request. A task that failed with `access_denied` is
    /// then resumed with `resume`. `invalid_state` for a completed or cancelled task; the URL and
    /// headers are checked as a request's are.
    pub fn update_credentials(&self, id: &str, credentials: Credentials) -> Result<()> {
        let e = self.inner.entry_or_sync(id)?;
        let state = e.inner.lock().state;
        if matches!(state, TaskState::Completed | TaskState::Cancelled) {
            return Err(Error::new(ErrorCode::InvalidState, format!("task '{id}' is {state:?}: nothing left to fetch")));
        }
        runner::apply_credentials(&self.inner.env, &e, &credentials)
    }
}
