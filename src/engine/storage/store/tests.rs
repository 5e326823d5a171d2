//! Tests of the task table: persistence, recovery, publish marks, schema and locking.

use super::schema::NEW_DB_FILE;
use super::*;

fn row(id: &str, seq: i64) -> TaskRow {
    TaskRow {
        id: id.into(),
        seq,
        url: "http://h/x".into(),
        destination: format!("/tmp/{id}"),
        headers: vec![("A".into(), "b".into())],
        connections: Some(4),
        sha256: None,
        priority: 0,
        overwrite: false,
        state: TaskState::Queued,
        total: None,
        etag: None,
        last_modified: None,
        bytes: 0,
        error: None,
        created_ms: 1,
        updated_ms: 1,
        part_file: None,
        network_policy: NetworkPolicy::Any,
        rate_limit: None,
    }
}

#[test]
fn rows_survive_reopen_and_running_becomes_queued() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (s, tasks, _) = Store::open(dir.path()).unwrap();
        assert!(tasks.is_empty());
        s.insert_tasks(&[row("a", 1), row("b", 2)]).unwrap();
        s.set_state("a", TaskState::Running, None, 0).unwrap();
        let mut c = s.lock();
        let t = c.transaction().unwrap();
        let r = [SegmentRow { start: 0, end: 10, written: 5, durable: 2 }, SegmentRow { start: 10, end: 20, written: 10, durable: 10 }];
        tx::set_resource(&t, "a", Some(20), Some("\"e\""), None, &r).unwrap();
        tx::write_progress(&t, "a", &[SegmentRow { start: 0, end: 10, written: 7, durable: 2 }]).unwrap();
        t.commit().unwrap();
    }
    let (_s, tasks, rec) = Store::open(dir.path()).unwrap();
    assert_eq!(rec.recovered_running, 1);
    assert!(!rec.rebooted);
    let a = &tasks[0];
    assert_eq!(a.row.state, TaskState::Queued);
    assert_eq!(a.row.total, Some(20));
    assert_eq!(a.row.headers, vec![("A".to_string(), "b".to_string())]);
    let mut ranges = a.ranges.clone();
    ranges.sort_by_key(|r| r.start);
    assert_eq!(ranges[0].written, 7);
    assert_eq!(ranges[0].durable, 2);
}

#[test]
fn publish_marks_are_committed_and_survive_a_close_that_does_not_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (s, _, _) = Store::open(dir.path()).unwrap();
        assert!(s.device().is_some());
        s.insert_tasks(&[row("a", 1)]).unwrap();
        s.mark_publishing(&[("a", "1:2:3@4:5")]).unwrap();
        s.sync_wal().unwrap();
    }
    let wal = dir.path().join(format!("{DB_FILE}-wal"));
    assert!(wal.metadata().unwrap().len() > 0, "closing leaves the WAL to the next open");
    let (s, tasks, _) = Store::open(dir.path()).unwrap();
    assert_eq!(tasks[0].row.id, "a");
    // The mark was read back (and, its destination not being that file, turned back into the
    // part file's identity): the commit outlived a close that left it in the WAL.
    let part: Option<String> = s.lock().query_row("SELECT part_file FROM tasks WHERE id = 'a'", [], |r| r.get(0)).unwrap();
    assert_eq!(part.as_deref(), Some("1:2:3"));
    drop(s);
    let (_, read) = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(read.len(), 1, "a reader sees what the WAL holds");
}

#[test]
fn a_group_of_marks_and_completions_reaches_exactly_its_rows_whatever_their_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _, _) = Store::open(dir.path()).unwrap();
    let ids = ["plain", "quote\"d", "back\\slash", "ünï \u{1F600}", "a\tb", "other"];
    s.insert_tasks(&ids.iter().enumerate().map(|(i, id)| row(id, i as i64 + 1)).collect::<Vec<_>>()).unwrap();
    {
        let mut c = s.lock();
        let t = c.transaction().unwrap();
        tx::replace_ranges(&t, ids[1], &[SegmentRow { start: 0, end: 10, written: 9, durable: 3 }]).unwrap();
        tx::replace_ranges(&t, "other", &[SegmentRow { start: 0, end: 10, written: 9, durable: 3 }]).unwrap();
        t.commit().unwrap();
    }
    let group = &ids[..5];
    let marks: Vec<(&str, String)> = group.iter().map(|id| (*id, format!("m-{id}"))).collect();
    s.mark_publishing(&marks.iter().map(|(id, m)| (*id, m.as_str())).collect::<Vec<_>>()).unwrap();
    let part_of =
        |id: &str| -> Option<String> { s.lock().query_row("SELECT part_file FROM tasks WHERE id = ?1", [id], |r| r.get(0)).unwrap() };
    for id in group {
        assert_eq!(part_of(id), Some(format!("m-{id}")), "{id:?}");
    }
    assert_eq!(part_of("other"), None);
    let done: Vec<(&str, u64)> = group.iter().enumerate().map(|(i, id)| (*id, 1000 + i as u64)).collect();
    s.complete_many(&done).unwrap();
    drop(s);
    let (_s, tasks, _) = Store::open(dir.path()).unwrap();
    for t in &tasks {
        if let Some(i) = group.iter().position(|id| *id == t.row.id) {
            assert_eq!(t.row.state, TaskState::Completed, "{:?}", t.row.id);
            assert_eq!((t.row.bytes, t.row.total), (1000 + i as u64, Some(1000 + i as u64)));
            assert!(t.ranges.is_empty(), "{:?}", t.row.id);
        } else {
            assert_eq!(t.row.state, TaskState::Queued);
            assert_eq!(t.ranges.len(), 1, "another task's journal stays");
        }
    }
}

#[test]
fn the_unused_destination_index_is_dropped_from_older_tables() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (s, _, _) = Store::open(dir.path()).unwrap();
        s.insert_tasks(&[row("a", 1)]).unwrap();
        s.lock().execute_batch("CREATE INDEX tasks_destination ON tasks(destination)").unwrap();
    }
    let (s, tasks, _) = Store::open(dir.path()).unwrap();
    assert_eq!(tasks.len(), 1);
    let n: i64 = s.lock().query_row("SELECT COUNT(*) FROM sqlite_master WHERE name = 'tasks_destination'", [], |r| r.get(0)).unwrap();
    assert_eq!(n, 0);
}

#[test]
fn a_new_table_is_built_aside_and_a_half_built_one_is_thrown_away() {
    let dir = tempfile::tempdir().unwrap();
    // What a process killed while building a table leaves: garbage under the temporary names.
    std::fs::write(dir.path().join(NEW_DB_FILE), b"half a database").unwrap();
    std::fs::write(dir.path().join(format!("{NEW_DB_FILE}-wal")), b"half a log").unwrap();
    {
        let (s, tasks, _) = Store::open(dir.path()).unwrap();
        assert!(tasks.is_empty());
        let mode: String = s.lock().pragma_query_value(None, "journal_mode", |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        let v: i64 = s.lock().pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        s.insert_tasks(&[row("a", 1)]).unwrap();
    }
    assert!(!dir.path().join(NEW_DB_FILE).exists());
    assert!(!dir.path().join(format!("{NEW_DB_FILE}-wal")).exists());
    // An existing table is opened, never rebuilt.
    let (_s, tasks, _) = Store::open(dir.path()).unwrap();
    assert_eq!(tasks.len(), 1);
}

#[test]
fn a_table_that_cannot_be_built_aside_is_created_in_place() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(NEW_DB_FILE)).unwrap();
    let (s, _, _) = Store::open(dir.path()).unwrap();
    s.insert_tasks(&[row("a", 1)]).unwrap();
    drop(s);
    let (_s, tasks, _) = Store::open(dir.path()).unwrap();
    assert_eq!(tasks.len(), 1);
}

#[test]
fn a_log_without_its_database_is_left_to_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (s, _, _) = Store::open(dir.path()).unwrap();
        s.insert_tasks(&[row("a", 1)]).unwrap();
    }
    // The close left the rows in the WAL (no checkpoint on close); without the database file
    // the table is created in place, as SQLite always did, and never built aside over the WAL.
    let wal = dir.path().join(format!("{DB_FILE}-wal"));
    assert!(wal.exists());
    std::fs::remove_file(dir.path().join(DB_FILE)).unwrap();
    let (_s, _tasks, _) = Store::open(dir.path()).unwrap();
    assert!(!dir.path().join(NEW_DB_FILE).exists());
}

#[test]
fn a_completion_drops_its_journal_and_only_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _, _) = Store::open(dir.path()).unwrap();
    s.insert_tasks(&[row("a", 1), row("b", 2), row("c", 3)]).unwrap();
    // No journal anywhere: completions still land.
    s.complete_many(&[("c", 7)]).unwrap();
    {
        let mut c = s.lock();
        let t = c.transaction().unwrap();
        tx::replace_ranges(&t, "a", &[SegmentRow { start: 0, end: 10, written: 9, durable: 3 }]).unwrap();
        tx::replace_ranges(&t, "b", &[SegmentRow { start: 0, end: 10, written: 5, durable: 5 }]).unwrap();
        t.commit().unwrap();
    }
    s.complete_many(&[("a", 10)]).unwrap();
    let journal: Vec<String> = {
        let c = s.lock();
        let mut q = c.prepare("SELECT task_id FROM ranges").unwrap();
        q.query_map([], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect()
    };
    assert_eq!(journal, vec!["b".to_string()]);
    drop(s);
    let (_s, tasks, _) = Store::open(dir.path()).unwrap();
    let state = |id: &str| tasks.iter().find(|t| t.row.id == id).map(|t| (t.row.state, t.row.bytes)).unwrap();
    assert_eq!(state("a"), (TaskState::Completed, 10));
    assert_eq!(state("c"), (TaskState::Completed, 7));
    assert_eq!(state("b").0, TaskState::Queued);
}

#[test]
fn a_reboot_keeps_only_durable_offsets() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (s, _, _) = Store::open(dir.path()).unwrap();
        s.insert_tasks(&[row("a", 1)]).unwrap();
        let mut c = s.lock();
        let t = c.transaction().unwrap();
        tx::replace_ranges(&t, "a", &[SegmentRow { start: 0, end: 10, written: 9, durable: 3 }]).unwrap();
        t.execute("UPDATE meta SET value = 'another-boot' WHERE key = 'boot_id'", []).unwrap();
        t.commit().unwrap();
    }
    let (_s, tasks, rec) = Store::open(dir.path()).unwrap();
    assert!(rec.rebooted);
    assert_eq!(tasks[0].ranges[0].written, 3);
}

#[test]
fn a_schema_1_table_is_migrated_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (s, _, _) = Store::open(dir.path()).unwrap();
        s.insert_tasks(&[row("a", 1)]).unwrap();
        s.lock().execute_batch(SCHEMA_2).unwrap();
        s.lock().execute_batch("ALTER TABLE tasks DROP COLUMN part_file; PRAGMA user_version = 1;").unwrap();
    }
    let (_r, tasks) = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(tasks.len(), 1, "a reader sees a schema 1 table");
    let (s, tasks, _) = Store::open(dir.path()).unwrap();
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].row.part_file, None);
    let v: i64 = s.lock().pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(v, SCHEMA_VERSION);
}

/// Turns a table of schema 5 back into one of schema 4 (what versions before stored caps wrote).
const SCHEMA_4: &str = "ALTER TABLE tasks DROP COLUMN rate_limit; PRAGMA user_version = 4;";

/// Turns a table of schema 5 back into one of schema 3 (what versions before network policies wrote).
const SCHEMA_3: &str = "ALTER TABLE tasks DROP COLUMN rate_limit; ALTER TABLE tasks DROP COLUMN network_policy; PRAGMA user_version = 3;";

/// Turns a table of schema 5 back into one of schema 2 (what versions before several processes wrote).
const SCHEMA_2: &str = "ALTER TABLE tasks DROP COLUMN rate_limit; ALTER TABLE tasks DROP COLUMN network_policy; DROP INDEX tasks_rev;
                        ALTER TABLE tasks DROP COLUMN rev; ALTER TABLE tasks DROP COLUMN control;
                        DROP TABLE clock; DROP TABLE gone; PRAGMA user_version = 2;";

#[test]
fn a_schema_2_table_is_migrated_and_numbers_new_tasks_after_its_own() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (s, _, _) = Store::open(dir.path()).unwrap();
        s.insert_tasks(&[row("a", 1), row("b", 7)]).unwrap();
        s.lock().execute_batch(SCHEMA_2).unwrap();
    }
    let (s, tasks, _) = Store::open(dir.path()).unwrap();
    assert_eq!(tasks.len(), 2);
    let first = s.write(|t| tx::alloc_seq(t, 3)).unwrap();
    assert_eq!(first, 8, "sequence numbers are never handed out twice");
    assert_eq!(s.write(|t| tx::alloc_seq(t, 1)).unwrap(), 11);
}

#[test]
fn network_policies_persist_and_a_schema_3_table_gets_any() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (s, _, _) = Store::open(dir.path()).unwrap();
        s.insert_tasks(&[row("old", 1)]).unwrap();
        s.lock().execute_batch(SCHEMA_3).unwrap();
    }
    let (s, tasks, _) = Store::open(dir.path()).unwrap();
    assert_eq!(tasks[0].row.network_policy, NetworkPolicy::Any, "tasks made before policies may use any network");
    s.insert_tasks(&[TaskRow { network_policy: NetworkPolicy::NotExpensive, ..row("new", 2) }]).unwrap();
    s.set_network_policy("old", NetworkPolicy::NotConstrained).unwrap();
    drop(s);
    let (_s, tasks, _) = Store::open(dir.path()).unwrap();
    let policies: Vec<(&str, NetworkPolicy)> = tasks.iter().map(|t| (t.row.id.as_str(), t.row.network_policy)).collect();
    assert_eq!(policies, [("old", NetworkPolicy::NotConstrained), ("new", NetworkPolicy::NotExpensive)]);
}

#[test]
fn task_caps_persist_and_a_schema_4_table_has_none() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (s, _, _) = Store::open(dir.path()).unwrap();
        s.insert_tasks(&[row("old", 1)]).unwrap();
        s.lock().execute_batch(SCHEMA_4).unwrap();
    }
    let (_r, tasks) = Store::open_read_only(dir.path()).unwrap();
    assert_eq!(tasks[0].row.rate_limit, None, "a reader sees a schema 4 table");
    let (s, tasks, _) = Store::open(dir.path()).unwrap();
    assert_eq!(tasks[0].row.rate_limit, None, "tasks made before stored caps have none");
    s.insert_tasks(&[TaskRow { rate_limit: Some(1 << 20), ..row("new", 2) }, TaskRow { rate_limit: Some(u64::MAX), ..row("huge", 3) }])
        .unwrap();
    s.set_rate_limit("old", Some(4096)).unwrap();
    s.set_rate_limit("new", None).unwrap();
    drop(s);
    let (_s, tasks, _) = Store::open(dir.path()).unwrap();
    let caps: Vec<(&str, Option<u64>)> = tasks.iter().map(|t| (t.row.id.as_str(), t.row.rate_limit)).collect();
    assert_eq!(caps, [("old", Some(4096)), ("new", None), ("huge", Some(i64::MAX as u64))]);
}

/// Per-process locks cannot be told apart within one process: these tests need open file
/// description locks (Linux, Android).
fn shares_by_open_file(s: &Store) -> bool {
    s.owners().unwrap().kind() == crate::engine::storage::locks::Kind::OpenFile
}

#[test]
fn a_second_opener_shares_the_table_and_leaves_the_tasks_of_a_live_owner_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _, _) = Store::open(dir.path()).unwrap();
    if !shares_by_open_file(&first) {
        return;
    }
    first.insert_tasks(&[row("a", 1), row("b", 2)]).unwrap();
    first.set_state("a", TaskState::Running, None, 5).unwrap();
    first.set_state("b", TaskState::Running, None, 5).unwrap();
    assert!(first.owners().unwrap().try_own(1).unwrap(), "the first opener runs a; b's process died");
    let (second, tasks, recovery) = Store::open(dir.path()).unwrap();
    let state = |tasks: &[StoredTask], id: &str| tasks.iter().find(|t| t.row.id == id).unwrap().row.state;
    assert_eq!(recovery.recovered_running, 1);
    assert_eq!(state(&tasks, "a"), TaskState::Running, "a live owner's task is left to it");
    assert_eq!(state(&tasks, "b"), TaskState::Queued);
    assert!(second.owners().unwrap().owned_elsewhere(1).unwrap());
    assert!(!second.owners().unwrap().try_own(1).unwrap());
    assert!(second.owners().unwrap().others_present());
    // Both write; each sees the other's changes.
    let seen = second.opened_at();
    first.set_priority("a", 9).unwrap();
    first.delete_task("b").unwrap();
    let changes = second.changes_since(seen).unwrap();
    assert_eq!(changes.rows.iter().map(|(r, _)| (r.id.as_str(), r.priority)).collect::<Vec<_>>(), vec![("a", 9)]);
    assert_eq!(changes.gone, vec![("b".to_string(), 2)]);
    assert!(second.foreign_commits() && !second.foreign_commits(), "another connection committed, once");
    assert!(second.changes_since(changes.rev).unwrap().rows.is_empty());
    // A control request reaches the owner with the row, and only for a task still queued or running.
    assert!(second.request_control("a", Control::Pause).unwrap());
    let changes = first.changes_since(changes.rev).unwrap();
    assert_eq!(changes.rows[0].1, Some(Control::Pause));
    first.clear_control("a").unwrap();
    first.set_state("a", TaskState::Paused, None, 5).unwrap();
    assert!(!second.request_control("a", Control::Cancel).unwrap());
    // The owner's end releases its tasks: the next opener recovers nothing that is running.
    drop(first);
    assert!(!second.owners().unwrap().others_present());
    assert!(second.owners().unwrap().try_own(1).unwrap());
}

#[test]
fn an_older_version_holding_the_directory_keeps_this_one_out() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    // What versions before several processes did: an exclusive flock on `lock`.
    let old = File::options().write(true).open(dir.path().join("lock")).unwrap();
    old.try_lock().unwrap();
    assert_eq!(Store::open(dir.path()).unwrap_err().code(), ErrorCode::StateDirLocked);
    let (_r, tasks) = Store::open_read_only(dir.path()).unwrap();
    assert!(tasks.is_empty(), "readers are still welcome");
    drop(old);
    let (s, _, _) = Store::open(dir.path()).unwrap();
    // And while this version has it open, an older one is refused.
    let old = File::options().write(true).open(dir.path().join("lock")).unwrap();
    assert!(old.try_lock().is_err());
    drop(s);
}

#[test]
fn a_publish_mark_under_a_moved_root_is_settled_there_and_left_alone_without_the_root() {
    use crate::engine::storage::part_file::identity_of;
    let base = tempfile::tempdir().unwrap();
    let roots = |at: &Path| Roots::new(&[("docs".into(), at.join("docs"))]).unwrap();
    let old = base.path().join("one");
    std::fs::create_dir_all(old.join("docs")).unwrap();
    std::fs::write(old.join("docs/f.bin"), b"hello").unwrap();
    let mark = identity_of(&old.join("docs/f.bin")).unwrap().publish_mark();
    {
        // Killed between the rename and the recorded completion.
        let (s, _, _) = Store::open_with(&old.join("state"), roots(&old)).unwrap();
        s.insert_tasks(&[TaskRow { destination: "@docs/f.bin".into(), ..row("a", 1) }]).unwrap();
        s.mark_publishing(&[("a", &mark)]).unwrap();
    }
    let new = base.path().join("two");
    std::fs::rename(&old, &new).unwrap();
    {
        let (_, tasks, rec) = Store::open(&new.join("state")).unwrap();
        assert_eq!(rec.published, 0);
        assert_eq!(tasks[0].row.part_file.as_deref(), Some(mark.as_str()), "kept for an open that declares the root");
    }
    let (_, tasks, rec) = Store::open_with(&new.join("state"), roots(&new)).unwrap();
    assert_eq!(rec.published, 1, "a rename keeps the file's identity");
    assert_eq!(tasks[0].row.state, TaskState::Completed);
    assert_eq!(tasks[0].row.destination, "@docs/f.bin");
}
