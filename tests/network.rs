//! Offline for hours, metered networks: the host reports the network, tasks the network refuses
//! wait (queued, with the reason in their status) without spending retries, and resume from
//! their bytes when it allows them; without a report the engine may judge for itself.

mod support;

use ferry::engine::{
    Config, ErrorCode, Event, Limits, Manager, NetworkPolicy, NetworkState, Request, RetryPolicy, TaskInfo, TaskState, WaitReason,
};
use ferry::loopback::{Faults, LoopbackServer};
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;
use support::*;

const MIB: u64 = 1 << 20;
const SIZE: u64 = 4 * MIB;

const WIFI: NetworkState = NetworkState { available: true, expensive: false, constrained: false };
const CELLULAR: NetworkState = NetworkState { available: true, expensive: true, constrained: false };
const OFFLINE: NetworkState = NetworkState { available: false, expensive: false, constrained: false };

/// A retry budget spent within about a second: every outage below outlasts it.
fn config() -> Config {
    Config {
        retry: RetryPolicy { budget: 3, base_delay: Duration::from_millis(20), max_delay: Duration::from_millis(300) },
        ..test_config()
    }
}

/// Slow enough that a test acts while the download runs.
fn server_on(port: u16) -> LoopbackServer {
    let mut f = Faults::new(SIZE);
    f.rate = Some(1_000_000);
    LoopbackServer::start(ferry::engine::runtime::handle(), port, f).expect("server")
}

fn request(server: &LoopbackServer, id: &str, world: &Local, policy: NetworkPolicy) -> Request {
    Request { task_id: Some(id.into()), connections: Some(2), network_policy: policy, ..Request::file(server.url(), world.out(id)) }
}

fn status(m: &Manager, id: &str) -> TaskInfo {
    m.status(id).expect("status")
}

fn until_waiting(m: &Manager, id: &str, reason: WaitReason) {
    until(20, &format!("{id} waiting for {reason}"), || {
        let s = status(m, id);
        s.state == TaskState::Queued && s.waiting == Some(reason)
    });
}

fn until_bytes(m: &Manager, id: &str, bytes: u64) {
    until(30, &format!("{id} past {bytes} bytes"), || status(m, id).bytes >= bytes);
}

/// Completed, byte-exact, resumed rather than restarted: its later requests asked for the rest
/// with `If-Range`, and the server sent less than the file twice over.
fn completes_from_its_bytes(world: &Local, server: &LoopbackServer, id: &str) {
    let info = wait(&world.manager, id, 60);
    assert_eq!(info.state, TaskState::Completed, "{info:?}");
    assert_eq!(info.waiting, None);
    assert_same(&read(&world.out(id)), &server.expected());
    assert!(server.stats().if_range_requests.load(SeqCst) >= 1, "it resumed with If-Range");
    let sent = server.stats().body_bytes.load(SeqCst);
    assert!(sent < SIZE + SIZE / 2, "{sent} bytes sent for {SIZE}: it started over");
}

#[test]
fn offline_longer_than_the_retry_budget_spends_no_retries_and_resumes_from_its_bytes() {
    let world = Local::with_config(config());
    let m = &world.manager;
    let server = server_on(0);
    let id = "offline";
    m.enqueue(request(&server, id, &world, NetworkPolicy::Any)).unwrap();
    until_bytes(m, id, MIB / 2);

    m.set_network(OFFLINE);
    until_waiting(m, id, WaitReason::NetworkUnavailable);
    let requests = server.stats().requests.load(SeqCst);
    // Longer than the whole retry budget takes: nothing is tried, so nothing is spent.
    std::thread::sleep(Duration::from_secs(2));
    let s = status(m, id);
    assert_eq!((s.state, s.waiting), (TaskState::Queued, Some(WaitReason::NetworkUnavailable)));
    assert_eq!(s.error, None, "no attempt failed");
    assert_eq!(server.stats().requests.load(SeqCst), requests, "no request while offline");
    assert!(!m.is_busy(), "a task waiting for the network leaves the manager idle");
    assert_eq!(m.network(), OFFLINE);

    m.set_network(WIFI);
    completes_from_its_bytes(&world, &server, id);
}

#[test]
fn a_server_gone_before_the_host_reports_then_back_completes() {
    // A budget that takes seconds to spend, so that the report below arrives within it.
    let world = Local::with_config(Config {
        retry: RetryPolicy { budget: 8, base_delay: Duration::from_millis(200), max_delay: Duration::from_secs(2) },
        ..config()
    });
    let m = &world.manager;
    let server = server_on(0);
    let port = server.addr().port();
    let id = "tunnel";
    m.enqueue(request(&server, id, &world, NetworkPolicy::Any)).unwrap();
    until_bytes(m, id, MIB / 2);

    // The phone enters a tunnel: connections fail first, the path monitor reports a moment later.
    drop(server);
    std::thread::sleep(Duration::from_millis(300));
    m.set_network(OFFLINE);
    until_waiting(m, id, WaitReason::NetworkUnavailable);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(status(m, id).state, TaskState::Queued, "offline is no failure, however long");

    let server = server_on(port);
    m.set_network(WIFI);
    completes_from_its_bytes(&world, &server, id);
}

#[test]
fn a_not_expensive_task_waits_on_cellular_with_its_reason_and_runs_on_wifi() {
    let world = Local::with_config(config());
    let m = &world.manager;
    let (big, small) = (server_on(0), server_on(0));
    m.set_network(CELLULAR);
    let waits = m.enqueue(request(&big, "big", &world, NetworkPolicy::NotExpensive)).unwrap();
    let runs = m.enqueue(request(&small, "small", &world, NetworkPolicy::Any)).unwrap();

    // A task allowed on cellular runs meanwhile; the other never reaches its server.
    assert_eq!(wait(m, runs.as_str(), 60).state, TaskState::Completed);
    let s = status(m, waits.as_str());
    assert_eq!(
        (s.state, s.waiting, s.network_policy),
        (TaskState::Queued, Some(WaitReason::NetworkExpensive), NetworkPolicy::NotExpensive)
    );
    assert_eq!(big.stats().requests.load(SeqCst), 0);

    // Low Data Mode on Wi-Fi holds it too, with that reason.
    m.set_network(NetworkState { constrained: true, ..WIFI });
    until_waiting(m, "big", WaitReason::NetworkConstrained);

    m.set_network(WIFI);
    until_bytes(m, "big", MIB / 2);
    // Wi-Fi to cellular mid-transfer: it stops, waits, and resumes on Wi-Fi from its bytes.
    m.set_network(CELLULAR);
    until_waiting(m, "big", WaitReason::NetworkExpensive);
    let kept = status(m, "big").bytes;
    assert!(kept >= MIB / 2, "its bytes are kept: {kept}");
    m.set_network(WIFI);
    completes_from_its_bytes(&world, &big, "big");
}

#[test]
fn a_task_allowed_on_cellular_is_not_stopped_by_the_switch() {
    let world = Local::with_config(config());
    let m = &world.manager;
    let server = server_on(0);
    m.set_network(WIFI);
    m.enqueue(request(&server, "any", &world, NetworkPolicy::Any)).unwrap();
    until_bytes(m, "any", MIB / 2);
    let events = m.subscribe();
    m.set_network(CELLULAR);
    let info = wait(m, "any", 60);
    assert_eq!(info.state, TaskState::Completed);
    assert_same(&read(&world.out("any")), &server.expected());
    let states: Vec<TaskState> = std::iter::from_fn(|| events.try_recv())
        .filter_map(|e| match e {
            Event::State(s) => Some(s.to),
            _ => None,
        })
        .collect();
    assert_eq!(states, [TaskState::Completed], "the transfer carried on, never stopped");
}

#[test]
fn the_policy_persists_and_can_be_changed() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_on(0);
    let dest = dir.path().join("kept");
    let req = Request { task_id: Some("kept".into()), network_policy: NetworkPolicy::NotExpensive, ..Request::file(server.url(), &dest) };
    {
        let m = Manager::open(dir.path().join("state"), config()).unwrap();
        m.set_network(CELLULAR);
        m.enqueue(req).unwrap();
        until_waiting(&m, "kept", WaitReason::NetworkExpensive);
        m.shutdown_blocking();
    }
    // The host passes the network it knows at open: the resumed task is judged before it starts.
    let m = Manager::open(dir.path().join("state"), Config { network: Some(CELLULAR), ..config() }).unwrap();
    until_waiting(&m, "kept", WaitReason::NetworkExpensive);
    assert_eq!(m.network(), CELLULAR);
    assert_eq!(status(&m, "kept").network_policy, NetworkPolicy::NotExpensive, "the policy came back from the task table");
    assert_eq!(server.stats().requests.load(SeqCst), 0);

    m.set_network_policy("kept", NetworkPolicy::Any).unwrap();
    let info = wait(&m, "kept", 60);
    assert_eq!((info.state, info.network_policy), (TaskState::Completed, NetworkPolicy::Any));
    assert_same(&read(&dest), &server.expected());
    assert_eq!(m.set_network_policy("nope", NetworkPolicy::Any).unwrap_err().code(), ErrorCode::TaskNotFound);
    m.shutdown_blocking();
}

#[test]
fn without_a_report_an_unreachable_network_waits_with_backoff_when_asked() {
    let free_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{free_port}/file");
    let judged = Local::with_config(Config {
        wait_when_unreachable: true,
        limits: Limits { max_running_tasks: 2, ..test_config().limits },
        retry: RetryPolicy { budget: 2, base_delay: Duration::from_millis(20), max_delay: Duration::from_secs(1) },
        ..test_config()
    });
    let m = &judged.manager;
    m.enqueue(Request { task_id: Some("far".into()), ..Request::file(&url, judged.out("far")) }).unwrap();
    until_waiting(m, "far", WaitReason::NetworkUnreachable);
    assert_eq!(status(m, "far").error.map(|e| e.code), Some(ErrorCode::ConnectFailed), "the last failure stays visible");

    // The network (here: the server) comes back; the next try after the backoff finds it.
    let server = server_on(free_port);
    let info = wait(m, "far", 60);
    assert_eq!(info.state, TaskState::Completed, "{info:?}");
    assert_same(&read(&judged.out("far")), &server.expected());

    // Off by default: the same failure fails the task.
    let plain = Local::with_config(Config {
        retry: RetryPolicy { budget: 2, base_delay: Duration::from_millis(20), max_delay: Duration::from_millis(100) },
        ..test_config()
    });
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{closed}/file");
    plain.fails("gone", Request::file(&url, plain.out("gone")), ErrorCode::ConnectFailed);
}
