//! Tests of part files: positional writes, anonymous files, publishing.

#[cfg(any(target_os = "linux", target_os = "android"))]
use super::anonymous::EMPTY_PATH_REFUSED;
use super::*;

#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn anonymous_files_are_linked_through_proc_when_the_descriptor_cannot_be() {
    let dir = tempfile::tempdir().unwrap();
    let refused = EMPTY_PATH_REFUSED.swap(true, Ordering::Relaxed);
    let dest = dir.path().join("via-proc.bin");
    let f = PartFile::create_fresh(&part_path(&dest), false).unwrap();
    assert!(f.is_anonymous(), "this test needs O_TMPFILE");
    f.write_at(0, b"through /proc").unwrap();
    f.place(&dest, false).unwrap();
    EMPTY_PATH_REFUSED.store(refused, Ordering::Relaxed);
    assert_eq!(std::fs::read(&dest).unwrap(), b"through /proc");
    let again = PartFile::create_fresh(&part_path(&dest), false).unwrap();
    assert_eq!(again.place(&dest, false).unwrap_err().code(), ErrorCode::DestinationExists);
}

#[test]
fn part_paths_name_the_file_beside_the_destination() {
    for (dest, part) in [
        ("/d/f.bin", "/d/f.bin.part"),
        ("/d//f", "/d/f.part"),
        ("/d/f/", "/d/f.part"),
        ("/d/f/.", "/d/f.part"),
        ("f", "f.part"),
        ("/d/.hidden", "/d/.hidden.part"),
    ] {
        assert_eq!(part_path(Path::new(dest)), Path::new(part), "{dest}");
    }
}

#[test]
fn vectored_writes_land_at_their_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.part");
    let f = PartFile::create(&p).unwrap();
    f.write_vectored_at(5, &[Bytes::from_static(b"fgh"), Bytes::new(), Bytes::from_static(b"ij")]).unwrap();
    f.write_vectored_at(0, &[Bytes::from_static(b"abcde")]).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"abcdefghij");
}

#[test]
fn publish_verifies_then_renames_without_clobbering() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out.bin");
    let part = part_path(&dest);
    assert_eq!(part.file_name().unwrap(), "out.bin.part");
    let f = PartFile::create(&part).unwrap();
    f.write_at(0, b"hello").unwrap();
    let sum = hex::encode(Sha256::digest(b"hello"));
    let wrong = "0".repeat(64);
    let e = publish(&f, Publish { destination: &dest, expected_size: Some(5), sha256: Some(&wrong), hashed: None, overwrite: false })
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::ChecksumMismatch);
    assert!(!dest.exists() && !part.exists());

    let f = PartFile::create(&part).unwrap();
    f.write_at(0, b"hello").unwrap();
    let mut h = Sha256::new();
    h.update(b"he");
    std::fs::write(&dest, b"other").unwrap();
    let e = publish(
        &f,
        Publish { destination: &dest, expected_size: Some(5), sha256: Some(&sum), hashed: Some((h.clone(), 2)), overwrite: false },
    )
    .unwrap_err();
    assert_eq!(e.code(), ErrorCode::DestinationExists);
    assert_eq!(std::fs::read(&dest).unwrap(), b"other");
    let f = PartFile::open_existing(&part).unwrap().unwrap();
    publish(&f, Publish { destination: &dest, expected_size: Some(5), sha256: Some(&sum), hashed: Some((h, 2)), overwrite: true }).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), b"hello");
    assert!(!part.exists());
}

#[test]
fn an_anonymous_part_file_gets_a_name_only_when_it_must() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("small.bin");
    let part = part_path(&dest);
    std::fs::write(&part, b"stale bytes of an earlier run").unwrap();
    let f = PartFile::create_fresh(&part, true).unwrap();
    if !f.is_anonymous() {
        eprintln!("no O_TMPFILE here; the named part file is used");
        return;
    }
    assert!(!part.exists(), "the stale part file is gone");
    f.write_at(0, b"hello").unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "nothing is visible while anonymous");
    f.place(&dest, false).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), b"hello");
    assert!(!part.exists());

    // Named for resuming, then placed by rename.
    let dest2 = dir.path().join("big.bin");
    let f = PartFile::create_fresh(&part_path(&dest2), true).unwrap();
    f.write_at(0, b"resumable").unwrap();
    f.ensure_named().unwrap();
    f.ensure_named().unwrap();
    assert!(!f.is_anonymous());
    assert_eq!(std::fs::read(part_path(&dest2)).unwrap(), b"resumable");
    f.write_at(9, b"!").unwrap();
    f.sync_durably().unwrap();
    f.place(&dest2, false).unwrap();
    assert_eq!(std::fs::read(&dest2).unwrap(), b"resumable!");
    assert!(!part_path(&dest2).exists());
}

#[test]
fn a_durable_sync_names_an_anonymous_file_first() {
    let dir = tempfile::tempdir().unwrap();
    let part = part_path(&dir.path().join("d.bin"));
    let f = PartFile::create_fresh(&part, true).unwrap();
    f.write_at(0, b"kept").unwrap();
    f.sync_durably().unwrap();
    assert!(!f.is_anonymous());
    assert_eq!(std::fs::read(&part).unwrap(), b"kept");
}

#[test]
fn an_anonymous_file_never_replaces_a_destination_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("taken.bin");
    std::fs::write(&dest, b"someone else's").unwrap();
    let f = PartFile::create_fresh(&part_path(&dest), true).unwrap();
    f.write_at(0, b"ours").unwrap();
    assert_eq!(f.place(&dest, false).unwrap_err().code(), ErrorCode::DestinationExists);
    assert_eq!(std::fs::read(&dest).unwrap(), b"someone else's");
    f.place(&dest, true).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), b"ours");
    assert!(!part_path(&dest).exists());
}

#[test]
fn size_mismatch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("o");
    let f = PartFile::create(&part_path(&dest)).unwrap();
    f.write_at(0, b"abc").unwrap();
    let e = publish(&f, Publish { destination: &dest, expected_size: Some(4), sha256: None, hashed: None, overwrite: false }).unwrap_err();
    assert_eq!(e.code(), ErrorCode::SizeMismatch);
    assert!(!dest.exists());
}
