//! Pins every error code. Codes are append-only: changing or reusing a number breaks every app that
//! stored or switched on it. The Swift, Kotlin and Python suites pin the same table.

use ferry::engine::ErrorCode;

const PINNED: &[(&str, u16)] = &[
    ("invalid_url", 1001),
    ("unsupported_scheme", 1002),
    ("relative_destination", 1003),
    ("destination_dir_missing", 1004),
    ("destination_exists", 1005),
    ("destination_not_writable", 1006),
    ("invalid_connections", 1007),
    ("invalid_header", 1008),
    ("conflicting_outputs", 1009),
    ("invalid_checksum", 1010),
    ("task_id_conflict", 1011),
    ("destination_busy", 1012),
    ("task_not_found", 1013),
    ("invalid_state", 1014),
    ("invalid_task_id", 1015),
    ("invalid_config", 1016),
    ("missing_output", 1017),
    ("unknown_lease", 1018),
    ("root_unknown", 1019),
    ("connect_failed", 2001),
    ("timeout", 2002),
    ("http_client_error", 2003),
    ("not_found", 2004),
    ("server_error", 2005),
    ("too_many_requests", 2006),
    ("too_many_redirects", 2007),
    ("redirect_loop", 2008),
    ("range_mismatch", 2009),
    ("content_changed", 2010),
    ("truncated_body", 2011),
    ("tls", 2012),
    ("network", 2013),
    ("unsupported_encoding", 2014),
    ("access_denied", 2015),
    ("protocol_error", 2016),
    ("credentials_refresh_failed", 2017),
    ("disk_full", 3001),
    ("storage_io", 3002),
    ("permission_denied", 3003),
    ("state_dir_locked", 3004),
    ("database", 3005),
    ("locks_unavailable", 3006),
    ("checksum_mismatch", 4001),
    ("size_mismatch", 4002),
    ("memory_limit_exceeded", 4003),
    ("cancelled", 5001),
    ("interrupted", 5002),
    ("shut_down", 5003),
    ("sink_rejected", 5004),
    ("internal", 9001),
];

#[test]
fn every_code_keeps_its_number() {
    assert_eq!(ErrorCode::ALL.len(), PINNED.len(), "a code was added: pin it here (and in the bindings' tests)");
    for (code, (name, number)) in ErrorCode::ALL.iter().zip(PINNED) {
        assert_eq!(code.name(), *name);
        assert_eq!(code.as_u16(), *number, "{name} changed its number");
    }
}
