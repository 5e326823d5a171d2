//! Criterion benchmarks of the engine's hot paths: Content-Range parsing, the per-write range map
//! update, one journal commit, and the event fan-out to subscribers.

use criterion::{criterion_group, criterion_main, Criterion};
use ferry::engine::model::events::{EventHub, ProgressEvent};
use ferry::engine::ranges::content_range;
use ferry::engine::ranges::map::{plan, RangeMap, SegmentRow};
use ferry::engine::storage::store::{tx, Store, TaskRow};
use ferry::engine::{TaskId, TaskState};
use std::hint::black_box;

fn content_range_parsing(c: &mut Criterion) {
    c.bench_function("content_range::parse", |b| b.iter(|| content_range::parse(black_box("bytes 1073741824-2147483647/4294967296"))));
}

fn range_map_write(c: &mut Criterion) {
    let total = 1u64 << 40;
    let mut map = RangeMap::from_plan(total, &plan(total, 16, 1));
    let starts: Vec<u64> = (0..16).filter_map(|_| map.claim_idle()).collect();
    let mut i = 0;
    c.bench_function("range map reserve+commit (one 256 KiB write)", |b| {
        b.iter(|| {
            let s = starts[i % starts.len()];
            i += 1;
            let r = map.reserve(s, 256 * 1024);
            map.commit(s, r.map_or(0, |(at, n)| at + n));
            black_box(r)
        })
    });
}

fn journal_commit(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = Store::open(dir.path()).unwrap();
    let row = TaskRow {
        id: "t".into(),
        seq: 1,
        url: "http://h/x".into(),
        destination: "/tmp/x".into(),
        headers: vec![],
        connections: None,
        sha256: None,
        priority: 0,
        overwrite: false,
        state: TaskState::Running,
        total: Some(1 << 30),
        etag: None,
        last_modified: None,
        bytes: 0,
        error: None,
        created_ms: 0,
        updated_ms: 0,
        part_file: None,
        network_policy: Default::default(),
        rate_limit: None,
    };
    store.insert_tasks(&[row]).unwrap();
    let mut rows: Vec<SegmentRow> =
        plan(1 << 30, 16, 1).into_iter().map(|(s, e)| SegmentRow { start: s, end: e, written: s, durable: s }).collect();
    {
        let mut conn = store.lock();
        let t = conn.transaction().unwrap();
        tx::replace_ranges(&t, "t", &rows).unwrap();
        t.commit().unwrap();
    }
    c.bench_function("journal commit of 16 dirty segments", |b| {
        b.iter(|| {
            for r in rows.iter_mut() {
                r.written = (r.written + 4096).min(r.end);
            }
            let mut conn = store.lock();
            let t = conn.transaction().unwrap();
            tx::write_progress(&t, "t", &rows).unwrap();
            tx::set_bytes(&t, "t", 1).unwrap();
            t.commit().unwrap();
        })
    });
}

fn event_fan_out(c: &mut Criterion) {
    let hub = EventHub::default();
    let subs: Vec<_> = (0..4).map(|_| hub.subscribe()).collect();
    let id = TaskId::parse("task").unwrap();
    let mut n = 0u64;
    c.bench_function("progress event to 4 subscribers (+ draining)", |b| {
        b.iter(|| {
            n += 1;
            hub.progress(ProgressEvent { id: id.clone(), bytes: n, total: Some(1 << 30), speed: 1e8, eta_seconds: Some(1.0) });
            for s in &subs {
                black_box(s.try_recv());
            }
        })
    });
}

criterion_group!(benches, content_range_parsing, range_map_write, journal_commit, event_fan_out);
criterion_main!(benches);
