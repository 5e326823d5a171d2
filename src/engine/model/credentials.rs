//! Credentials that expire: signed URLs and bearer tokens often run out before a large or paused
//! download ends. The host supplies fresh ones through a [`CredentialSource`], which the engine asks
//! when a server answers 401 or 403 (and, if the configuration says so, before a run resumes a
//! task that already has bytes), or through `Manager::update_credentials`. New credentials change
//! only how the resource is asked for: the validators still decide whether the answer is the same
//! resource, so a changed one restarts cleanly and is never stitched to the old bytes.

use super::error::{Error, ErrorCode, Result};
use super::request::{validate_headers, validate_url};

/// What a refresh gives: a new URL for the same resource, new request headers, or both. A field
/// left `None` keeps the task's current one; headers replace the task's extra headers as a whole.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    /// A new http(s) URL (a newly signed one).
    pub url: Option<String>,
    /// The task's request headers from now on (an `Authorization` with a new token, say).
    pub headers: Option<Vec<(String, String)>>,
}

/// Why the engine asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshCause {
    /// The server answered this status (401 or 403).
    Denied(u16),
    /// A run is about to resume a task that has bytes (asked only when the configuration's
    /// `refresh_before_resume` is set).
    Resuming,
}

impl RefreshCause {
    /// The status for the host: the server's, or 0 before a resume.
    pub fn status(self) -> u16 {
        match self {
            RefreshCause::Denied(s) => s,
            RefreshCause::Resuming => 0,
        }
    }
}

/// The host's source of fresh credentials. Called off the async runtime, on a blocking thread, at
/// most once at a time per task; bounded by the configuration's `refresh_timeout`.
pub trait CredentialSource: Send + Sync {
    /// Fresh credentials for task `task_id`, `None` to give up (the task fails with the server's
    /// `access_denied`), or an error message (the task fails with `credentials_refresh_failed`).
    fn refresh(&self, task_id: &str, cause: RefreshCause) -> std::result::Result<Option<Credentials>, String>;
}

/// The URL and headers a task is asked for with, after checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    /// The URL.
    pub url: url::Url,
    /// The extra request headers.
    pub headers: Vec<(String, String)>,
}

impl Credentials {
    /// The task's access after these credentials, `current` being what it is now.
    pub fn apply(&self, current: &Access) -> Result<Access> {
        let url = match &self.url {
            Some(raw) => validate_url(raw)?,
            None => current.url.clone(),
        };
        let headers = match &self.headers {
            Some(h) => validate_headers(h)?,
            None => current.headers.clone(),
        };
        Ok(Access { url, headers })
    }
}

/// The error of a refresh that threw, panicked or did not answer.
pub fn refresh_failed(detail: impl std::fmt::Display) -> Error {
    Error::new(ErrorCode::CredentialsRefreshFailed, format!("the credential refresh failed: {detail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access() -> Access {
        Access { url: url::Url::parse("https://a.example/f?sig=old").unwrap(), headers: vec![("X-A".into(), "1".into())] }
    }

    #[test]
    fn a_refresh_keeps_what_it_does_not_name() {
        let c = Credentials { url: Some("https://b.example/f?sig=new".into()), headers: None };
        let a = c.apply(&access()).unwrap();
        assert_eq!(a.url.as_str(), "https://b.example/f?sig=new");
        assert_eq!(a.headers, access().headers);
        let c = Credentials { url: None, headers: Some(vec![("Authorization".into(), "Bearer 2".into())]) };
        let a = c.apply(&access()).unwrap();
        assert_eq!(a.url, access().url);
        assert_eq!(a.headers, vec![("Authorization".to_string(), "Bearer 2".to_string())]);
    }

    #[test]
    fn bad_credentials_are_bad_input() {
        let bad_url = Credentials { url: Some("ftp://a.example/f".into()), headers: None };
        assert!(bad_url.apply(&access()).is_err());
        let bad_header = Credentials { url: None, headers: Some(vec![("X-A".into(), "a\r\nb".into())]) };
        assert!(bad_header.apply(&access()).is_err());
    }
}
