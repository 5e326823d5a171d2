//! What the OS is asked to fetch for a lease, and how its task names the lease.
//!
//! The tag goes into the OS task's `taskDescription` (iOS) or the job's extras (Android): the
//! one thing that survives a relaunch and maps an OS task back to its lease. It is versioned and
//! holds the lease id only: no URL, no header, nothing secret, and nothing the app chose (task ids
//! are the app's, and may be long or personal).

use crate::engine::http::verdict::Validator;
use crate::engine::model::error::{Error, ErrorCode, Result};
use crate::engine::ranges::content_range::range_header;

/// The prefix of every tag this version writes.
pub const TAG_PREFIX: &str = "ferry1:";

/// One range for the OS to fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OsRequest {
    /// The lease (unique, never reused).
    pub lease_id: String,
    /// The task it fetches for.
    pub task_id: String,
    /// The OS task's tag (see [`os_tag`]).
    pub os_tag: String,
    /// The task's URL.
    pub url: String,
    /// Every header to send: the caller's, then `Accept-Encoding: identity`, and for a ranged
    /// lease `Range` and `If-Range` (the strong validator).
    pub headers: Vec<(String, String)>,
    /// First byte.
    pub start: u64,
    /// One past the last byte; `u64::MAX` for a whole-file lease of unknown length.
    pub end: u64,
    /// The resource's length, when known: a chunk must come from a resource of this length.
    pub total: Option<u64>,
    /// The whole resource in one plain `GET`: the server gave no ranges or no strong validator.
    /// Adopted only as a complete `200` of the expected length (and checksum).
    pub whole: bool,
}

/// The tag of a lease's OS task.
pub fn os_tag(lease_id: &str) -> String {
    format!("{TAG_PREFIX}{lease_id}")
}

/// The lease a tag names, if it is one of ours.
pub fn lease_of_tag(tag: &str) -> Option<&str> {
    tag.strip_prefix(TAG_PREFIX).filter(|id| is_lease_id(id))
}

/// Whether `id` has the shape of a lease id (`<8 hex digits>-<number>`): lease ids name staged
/// files, so nothing else may pass for one.
pub fn is_lease_id(id: &str) -> bool {
    let Some((table, n)) = id.split_once('-') else { return false };
    table.len() == 8
        && table.bytes().all(|b| b.is_ascii_hexdigit())
        && !n.is_empty()
        && n.len() <= 19
        && n.bytes().all(|b| b.is_ascii_digit())
}

/// Refuses a lease id that cannot be one.
pub fn check_lease_id(id: &str) -> Result<()> {
    if is_lease_id(id) {
        Ok(())
    } else {
        Err(Error::new(ErrorCode::UnknownLease, "not a lease id"))
    }
}

/// The headers of a lease's request: the caller's, then the engine's own.
pub fn headers_for(caller: &[(String, String)], range: Option<(u64, u64)>, validator: Option<&Validator>) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = caller.to_vec();
    h.push(("Accept-Encoding".into(), "identity".into()));
    if let Some((start, end)) = range {
        h.push(("Range".into(), range_header(start, Some(end))));
        if let Some(v) = validator {
            h.push(("If-Range".into(), v.if_range().to_string()));
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_carry_the_lease_id_only_and_nothing_else_passes_for_one() {
        let tag = os_tag("0a1b2c3d-17");
        assert_eq!(tag, "ferry1:0a1b2c3d-17");
        assert_eq!(lease_of_tag(&tag), Some("0a1b2c3d-17"));
        for bad in ["ferry0:0a1b2c3d-17", "ferry1:../etc-1", "ferry1:0a1b2c3d-", "ferry1:0a1b2c3-1", "ferry1:0a1b2c3d-1/2", "x"] {
            assert_eq!(lease_of_tag(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_ranged_request_asks_for_identity_bytes_of_the_same_version() {
        let h = headers_for(&[("Authorization".into(), "Bearer t".into())], Some((100, 200)), Some(&Validator::ETag("\"v1\"".into())));
        assert_eq!(
            h,
            vec![
                ("Authorization".into(), "Bearer t".into()),
                ("Accept-Encoding".into(), "identity".into()),
                ("Range".into(), "bytes=100-199".into()),
                ("If-Range".into(), "\"v1\"".into()),
            ]
        );
        assert_eq!(headers_for(&[], None, None), vec![("Accept-Encoding".to_string(), "identity".to_string())]);
    }
}
