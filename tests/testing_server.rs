//! The test server exported for app developers' unit tests (`ferry::ffi::testing::TestServer`):
//! it serves the file it says, counts what it sent, and its faults reach a download.

mod support;

use ferry::engine::{ErrorCode, Request, TaskState};
use ferry::ffi::testing::{TestServer, TestServerConfig};
use support::*;

#[test]
fn the_exported_server_serves_its_file_counts_and_changes_its_faults() {
    let server = TestServer::start(Some(TestServerConfig { size: 3 << 20, seed: 7, ..TestServerConfig::default() })).unwrap();
    let l = Local::new();
    let info = l.download(Request::file(server.url(), l.out("a.bin")));
    assert_eq!(info.state, TaskState::Completed);
    let got = read(&l.out("a.bin"));
    assert_same(&got, &server.content());
    use sha2::Digest;
    assert_eq!(hex::encode(sha2::Sha256::digest(&got)), server.sha256());
    let stats = server.stats();
    assert!(stats.requests >= 1 && stats.body_bytes >= 3 << 20, "{stats:?}");

    server.set_config(TestServerConfig { size: 3 << 20, seed: 7, busy_requests: 100, busy_status: 503, ..TestServerConfig::default() });
    let mut config = test_config();
    config.retry.budget = 1;
    let l = Local::with_config(config);
    let info = l.download(Request::file(server.url_named("b.bin".into()), l.out("b.bin")));
    assert_eq!(info.state, TaskState::Failed);
    assert_eq!(info.error.unwrap().code, ErrorCode::ServerError);
    let info = l.download(Request::file(server.status_url(404), l.out("c.bin")));
    assert_eq!(info.error.unwrap().code, ErrorCode::NotFound);
    assert!(!server.log().is_empty());
}
