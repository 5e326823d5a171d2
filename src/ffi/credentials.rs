//! Credentials that expire, exported: the host's refresher, called when a server answers 401 or
//! 403 (and before a resume when `ManagerConfig.refresh_before_resume` is set), and the call that
//! replaces a task's URL or headers. Conversions only; the rules are `engine::model::credentials`
//! and the runner's.

use super::callbacks::enter_foreign;
use super::error::{CallbackError, DownloadError};
use super::gate::Foreign;
use super::manager::DownloadManager;
use super::types::HttpHeader;
use crate::engine;
use std::sync::Arc;

/// A new URL for the same resource (a newly signed one), new request headers (a new token), or
/// both. An unset field keeps the task's current one; headers replace the task's extra headers.
#[derive(Clone, Debug, Default, uniffi::Record)]
pub struct FreshCredentials {
    /// The new http(s) URL.
    #[uniffi(default)]
    pub url: Option<String>,
    /// The task's request headers from now on.
    #[uniffi(default)]
    pub headers: Option<Vec<HttpHeader>>,
}

impl From<FreshCredentials> for engine::Credentials {
    fn from(c: FreshCredentials) -> Self {
        engine::Credentials { url: c.url, headers: c.headers.map(|h| h.into_iter().map(|h| (h.name, h.value)).collect()) }
    }
}

/// The host's source of fresh credentials (implemented in Swift, Kotlin or Python).
#[uniffi::export(with_foreign)]
pub trait CredentialRefresher: Send + Sync {
    /// Fresh credentials for `task_id`, whose server answered `status` (401 or 403; 0 before a
    /// resume). Return nothing to give up (the task fails with `AccessDenied`); throw to fail it
    /// with `CredentialsRefreshFailed`. Called on a Ferry thread; it may block (to ask a token
    /// service) up to `ManagerConfig.refresh_timeout_ms`.
    fn refresh(&self, task_id: String, status: u16) -> Result<Option<FreshCredentials>, CallbackError>;
}

struct Refresher(Foreign<dyn CredentialRefresher>);

impl engine::CredentialSource for Refresher {
    fn refresh(&self, task_id: &str, cause: engine::RefreshCause) -> Result<Option<engine::Credentials>, String> {
        let Some(_call) = enter_foreign() else { return Err("the host process is exiting".into()) };
        let call = std::panic::AssertUnwindSafe(|| self.0.get().refresh(task_id.to_string(), cause.status()));
        match std::panic::catch_unwind(call) {
            Ok(Ok(fresh)) => Ok(fresh.map(Into::into)),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the refresh callback panicked".into()),
        }
    }
}

#[uniffi::export]
impl DownloadManager {
    /// Sets the refresher the engine asks for fresh credentials (`None` removes it). Without
    /// one, a 401 or 403 fails the task with `AccessDenied`.
    pub fn set_credential_refresher(&self, refresher: Option<Arc<dyn CredentialRefresher>>) {
        self.inner.set_credential_source(refresher.map(|r| Arc::new(Refresher(Foreign::new(r))) as Arc<dyn engine::CredentialSource>));
    }

    /// Replaces a task's URL or headers, stored with the task and used from its next request on;
    /// the validators still decide whether the new URL serves the same bytes. A task that failed
    /// with `AccessDenied` is then resumed with `resume`. `InvalidState` for a completed or
    /// cancelled task.
    pub fn update_credentials(&self, task_id: String, credentials: FreshCredentials) -> Result<(), DownloadError> {
        self.inner.update_credentials(&task_id, credentials.into()).map_err(Into::into)
    }
}
