//! The seed-style API people know from the iOS `background_download` module:
//! `download(url, destination, task_id)`, `status(task_id)`, `cancel(task_id)` on a default manager.
//!
//! The default manager's state directory is, in order: the one given to `set_default_state_dir`,
//! `$FERRY_STATE_DIR`, the platform's data directory for "ferry". Mobile apps should set it to a
//! directory inside their container before the first call.

use super::error::{DownloadError, ErrorCode};
use super::manager::DownloadManager;
use super::types::{DownloadRequest, TaskStatus};
use parking_lot::Mutex;
use std::sync::Arc;

static DEFAULT: Mutex<Option<Arc<DownloadManager>>> = Mutex::new(None);
static DEFAULT_DIR: Mutex<Option<String>> = Mutex::new(None);

/// Chooses the default manager's state directory; call before the first `download`.
#[uniffi::export]
pub fn set_default_state_dir(state_dir: String) -> Result<(), DownloadError> {
    if let Some(m) = DEFAULT.lock().as_ref() {
        if std::path::absolute(&state_dir).ok().as_deref() != Some(m.inner.dir()) {
            return Err(DownloadError::InvalidInput {
                code: ErrorCode::InvalidState,
                message: "the default manager is already open on another directory".into(),
            });
        }
    }
    *DEFAULT_DIR.lock() = Some(state_dir);
    Ok(())
}

/// The default manager (opened on first use).
#[uniffi::export]
pub fn default_manager() -> Result<Arc<DownloadManager>, DownloadError> {
    let mut slot = DEFAULT.lock();
    if let Some(m) = slot.as_ref() {
        return Ok(m.clone());
    }
    let dir = DEFAULT_DIR
        .lock()
        .clone()
        .or_else(|| std::env::var("FERRY_STATE_DIR").ok())
        .or_else(|| directories::ProjectDirs::from("", "", "ferry").map(|p| p.data_dir().to_string_lossy().into_owned()))
        .unwrap_or_else(|| std::env::temp_dir().join("ferry-state").to_string_lossy().into_owned());
    let m = DownloadManager::open(dir, None)?;
    *slot = Some(m.clone());
    Ok(m)
}

/// Starts downloading `url` to `destination` (absolute path); returns the task id. Calling it again
/// with the same `task_id` returns that id without downloading again.
#[uniffi::export(default(task_id = None))]
pub fn download(url: String, destination: String, task_id: Option<String>) -> Result<String, DownloadError> {
    default_manager()?.enqueue(DownloadRequest {
        url,
        destination: Some(destination),
        task_id,
        headers: Vec::new(),
        connections: None,
        sha256: None,
        priority: 0,
        overwrite: false,
        memory_limit: None,
        rate_limit: None,
        network_policy: None,
    })
}

/// Status of a task of the default manager.
#[uniffi::export]
pub fn status(task_id: String) -> Result<TaskStatus, DownloadError> {
    default_manager()?.status(task_id)
}

/// Cancels a task of the default manager.
#[uniffi::export]
pub fn cancel(task_id: String) -> Result<(), DownloadError> {
    default_manager()?.cancel(task_id)
}

/// The library version.
#[uniffi::export]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
