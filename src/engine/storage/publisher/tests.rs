//! Tests of the group commit: batches, waits for company, syncs.

use super::group::{sync_each, system_dirty_bytes};
use super::*;

#[test]
fn a_batch_publishes_every_file_and_refuses_existing_destinations() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let mut waits = Vec::new();
    for i in 0..20 {
        let dest = dir.path().join(format!("f{i}"));
        let part = PartFile::create(&crate::engine::storage::part_file::part_path(&dest)).unwrap();
        part.write_at(0, format!("file {i}").as_bytes()).unwrap();
        if i == 7 {
            std::fs::write(&dest, b"already here").unwrap();
        }
        waits.push(global().publish(Arc::new(part), dest, false, None, None));
    }
    let results = rt.block_on(futures_util::future::join_all(waits));
    for (i, r) in results.iter().enumerate() {
        let dest = dir.path().join(format!("f{i}"));
        if i == 7 {
            assert_eq!(r.as_ref().unwrap_err().code(), crate::engine::model::error::ErrorCode::DestinationExists);
            assert_eq!(std::fs::read(&dest).unwrap(), b"already here");
        } else {
            r.as_ref().unwrap();
            assert_eq!(std::fs::read(&dest).unwrap(), format!("file {i}").as_bytes());
        }
    }
    assert!(system_dirty_bytes().is_some());
}

fn part_in(dir: &std::path::Path, name: &str) -> (Arc<PartFile>, PathBuf) {
    let dest = dir.join(name);
    let part = PartFile::create(&crate::engine::storage::part_file::part_path(&dest)).unwrap();
    part.write_at(0, name.as_bytes()).unwrap();
    (Arc::new(part), dest)
}

/// Runs `f` with a publisher that would wait a minute for company, and fails if it is not done
/// within 20 seconds: only the end of the downloads under way can end the wait that early.
fn with_patient_publisher(files: usize, f: impl FnOnce(Publisher, std::path::PathBuf) -> futures_util::future::BoxFuture<'static, ()>) {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let p = Publisher::with_linger(Linger { files, wait: Duration::from_secs(60) });
    let fut = f(p, dir.path().to_path_buf());
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(20), fut).await.expect("the publisher kept waiting") });
}

#[test]
fn the_last_download_handing_its_file_over_ends_the_wait_and_joins_the_group() {
    with_patient_publisher(64, |p, dir| {
        Box::pin(async move {
            let first = p.expect();
            let last = p.expect();
            let (a, da) = part_in(&dir, "a");
            let (b, db) = part_in(&dir, "b");
            let pa = p.clone();
            let wait_a = tokio::spawn(async move { pa.publish(a, da, false, None, Some(first)).await });
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(!wait_a.is_finished(), "a file waits while another download is under way");
            p.publish(b, db, false, None, Some(last)).await.unwrap();
            wait_a.await.unwrap().unwrap();
            assert_eq!(p.groups_formed(), 1, "both files share one group");
            assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"a");
            assert_eq!(std::fs::read(dir.join("b")).unwrap(), b"b");
        })
    });
}

#[test]
fn a_download_that_ends_without_a_file_ends_the_wait() {
    with_patient_publisher(64, |p, dir| {
        Box::pin(async move {
            let failing = p.expect();
            let (a, da) = part_in(&dir, "a");
            let pa = p.clone();
            let wait_a = tokio::spawn(async move { pa.publish(a, da, false, None, None).await });
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(!wait_a.is_finished());
            drop(failing);
            wait_a.await.unwrap().unwrap();
            assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"a");
        })
    });
}

#[test]
fn nothing_under_way_means_no_wait_and_a_full_group_goes_at_once() {
    with_patient_publisher(3, |p, dir| {
        Box::pin(async move {
            let (a, da) = part_in(&dir, "alone");
            p.publish(a, da, false, None, None).await.unwrap();
            // Downloads still under way, but the group is full.
            let _busy = p.expect();
            let before = p.groups_formed();
            let waits: Vec<_> = ["x", "y", "z"]
                .iter()
                .map(|n| {
                    let (part, dest) = part_in(&dir, n);
                    let p = p.clone();
                    tokio::spawn(async move { p.publish(part, dest, false, None, None).await })
                })
                .collect();
            for w in waits {
                w.await.unwrap().unwrap();
            }
            assert_eq!(p.groups_formed(), before + 1);
        })
    });
}

#[test]
fn new_names_are_synced_with_or_without_a_covering_syncfs() {
    let dir = tempfile::tempdir().unwrap();
    for covered in [false, true] {
        let jobs: Vec<Job> = (0..6)
            .map(|i| {
                let dest = dir.path().join(format!("n{covered}{i}"));
                let part = PartFile::create_fresh(&crate::engine::storage::part_file::part_path(&dest), false).unwrap();
                part.write_at(0, b"named").unwrap();
                let (reply, _) = tokio::sync::oneshot::channel();
                Job { part: Arc::new(part), destination: dest, overwrite: false, record: None, reply }
            })
            .collect();
        let mut group = Group::new(jobs);
        place(&mut group);
        assert_eq!(group.placed.len(), 6);
        assert!(group.placed.iter().all(|&(_, first)| first), "anonymous files get their first name when placed");
        group.covered = if covered { vec![group.jobs[0].part.device().unwrap()] } else { Vec::new() };
        sync_names(&group, &[]);
        for j in &group.jobs {
            assert_eq!(std::fs::read(&j.destination).unwrap(), b"named");
        }
    }
}

#[test]
fn syncing_file_by_file_covers_every_file_of_a_batch_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let jobs: Vec<Job> = (0..21)
        .map(|i| {
            let dest = dir.path().join(format!("g{i}"));
            let part = PartFile::create(&crate::engine::storage::part_file::part_path(&dest)).unwrap();
            part.write_at(0, b"x").unwrap();
            let (reply, _) = tokio::sync::oneshot::channel();
            Job { part: Arc::new(part), destination: dest, overwrite: false, record: None, reply }
        })
        .collect();
    let ok = || jobs.iter().map(|_| Ok(())).collect::<Vec<Result<()>>>();
    let results = sync_each(&jobs, ok());
    assert_eq!(results.len(), 21);
    assert!(results.iter().all(|r| r.is_ok()));
    assert_eq!(sync_each(&jobs[..2], ok()[..2].to_vec()).len(), 2);
    let mut some_failed = ok();
    some_failed[5] = Err(Error::internal("earlier step"));
    let results = sync_each(&jobs, some_failed);
    assert!(results[5].is_err(), "a file that failed an earlier step stays failed");
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 20);
}
