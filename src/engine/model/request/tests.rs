//! The request rules: URLs, destinations, headers, checksums.

use super::*;

fn code(r: Result<TaskSpec>) -> ErrorCode {
    r.unwrap_err().code()
}

#[test]
fn bad_input_gets_its_own_code() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("f.bin");
    let ok = Request::file("http://127.0.0.1:1/x", &dest);
    assert!(ok.validate().is_ok());
    assert_eq!(code(Request::file("not a url", &dest).validate()), ErrorCode::InvalidUrl);
    assert_eq!(code(Request::file("ftp://h/x", &dest).validate()), ErrorCode::UnsupportedScheme);
    assert_eq!(code(Request::file("file:///etc/passwd", &dest).validate()), ErrorCode::UnsupportedScheme);
    assert_eq!(code(Request::file("http://h/x", "rel/f").validate()), ErrorCode::RelativeDestination);
    assert_eq!(code(Request::file("http://h/x", dir.path().join("no/such/f")).validate()), ErrorCode::DestinationDirMissing);
    std::fs::write(&dest, b"x").unwrap();
    assert_eq!(code(Request::file("http://h/x", &dest).validate()), ErrorCode::DestinationExists);
    assert!(Request { overwrite: true, ..Request::file("http://h/x", &dest) }.validate().is_ok());
    assert_eq!(code(Request::file("http://h/x", dir.path()).validate()), ErrorCode::DestinationNotWritable);
    let fresh = dir.path().join("g.bin");
    assert_eq!(code(Request { connections: Some(0), ..Request::file("http://h/x", &fresh) }.validate()), ErrorCode::InvalidConnections);
    assert_eq!(code(Request { connections: Some(65), ..Request::file("http://h/x", &fresh) }.validate()), ErrorCode::InvalidConnections);
    let crlf = Request { headers: vec![("X-A".into(), "a\r\nEvil: 1".into())], ..Request::file("http://h/x", &fresh) };
    assert_eq!(code(crlf.validate()), ErrorCode::InvalidHeader);
    let bad_name = Request { headers: vec![("X A".into(), "a".into())], ..Request::file("http://h/x", &fresh) };
    assert_eq!(code(bad_name.validate()), ErrorCode::InvalidHeader);
    let owned = Request { headers: vec![("Range".into(), "bytes=0-".into())], ..Request::file("http://h/x", &fresh) };
    assert_eq!(code(owned.validate()), ErrorCode::InvalidHeader);
    let sum = Request { sha256: Some("abc".into()), ..Request::file("http://h/x", &fresh) };
    assert_eq!(code(sum.validate()), ErrorCode::InvalidChecksum);
    let both = Request { memory_limit: Some(10), ..Request::file("http://h/x", &fresh) };
    assert_eq!(code(both.validate()), ErrorCode::ConflictingOutputs);
    assert_eq!(code(Request { url: "http://h/x".into(), ..Default::default() }.validate()), ErrorCode::MissingOutput);
    let id = Request { task_id: Some(String::new()), ..Request::file("http://h/x", &fresh) };
    assert_eq!(code(id.validate()), ErrorCode::InvalidTaskId);
}

#[test]
fn a_listed_directory_gives_the_verdicts_of_single_lookups() {
    // Enough names in one directory that the batch lists it; among the later ones, a file, a
    // directory, a symlink, someone's `.part` file, and free names.
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);
    std::fs::write(p("taken"), b"x").unwrap();
    std::fs::create_dir(p("subdir")).unwrap();
    std::os::unix::fs::symlink("nowhere", p("link")).unwrap();
    std::fs::write(p("half.part"), b"x").unwrap();
    let mut names: Vec<String> = (0..2 * LIST_AFTER).map(|i| format!("free{i}")).collect();
    names.extend(["taken", "subdir", "link", "half", "free-last", "TAKEN"].map(String::from));
    let mut dirs = DirChecks::default();
    let verdicts: Vec<Option<ErrorCode>> =
        names.iter().map(|n| Request::file("http://h/x", p(n)).validate_with(&mut dirs).err().map(|e| e.code())).collect();
    let listed = dirs.0.values().next().unwrap();
    assert!(listed.listing.is_some(), "the directory was listed");
    let single: Vec<Option<ErrorCode>> =
        names.iter().map(|n| Request::file("http://h/x", p(n)).validate().err().map(|e| e.code())).collect();
    assert_eq!(verdicts, single);
    let tail = &verdicts[verdicts.len() - 6..verdicts.len() - 1];
    assert_eq!(
        tail,
        &[
            Some(ErrorCode::DestinationExists),
            Some(ErrorCode::DestinationNotWritable),
            Some(ErrorCode::DestinationExists),
            Some(ErrorCode::DestinationExists),
            None
        ]
    );

    // A name that could fold onto an ASCII one keeps the directory from being listed.
    std::fs::write(p("\u{212A}elvin"), b"x").unwrap();
    let mut dirs = DirChecks::default();
    for n in &names {
        let _ = Request::file("http://h/x", p(n)).validate_with(&mut dirs);
    }
    assert!(dirs.0.values().next().unwrap().listing.is_none());
}

#[test]
fn unwritable_directory_is_refused() {
    if unsafe { libc::geteuid() } == 0 {
        // root may write almost anywhere; a process directory in /proc refuses even root.
        let r = Request::file("http://h/x", "/proc/1/ferry-test");
        assert_eq!(code(r.validate()), ErrorCode::DestinationNotWritable);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o500)).unwrap();
    let r = Request::file("http://h/x", ro.join("f"));
    assert_eq!(code(r.validate()), ErrorCode::DestinationNotWritable);
}

#[test]
fn a_device_fifo_or_socket_is_never_replaced_even_when_asked_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let socket = dir.path().join("socket");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    for special in [&fifo, &socket, &std::path::PathBuf::from("/dev/null")] {
        for overwrite in [false, true] {
            let r = Request { overwrite, ..Request::file("http://h/x", special) };
            assert_eq!(code(r.validate()), ErrorCode::DestinationNotWritable, "{special:?}, overwrite {overwrite}");
        }
    }
    // A symlink is a name like any other: replaced (not written through) when asked to overwrite.
    let link = dir.path().join("link");
    std::os::unix::fs::symlink("/dev/null", &link).unwrap();
    assert_eq!(code(Request::file("http://h/x", &link).validate()), ErrorCode::DestinationExists);
    assert!(Request { overwrite: true, ..Request::file("http://h/x", &link) }.validate().is_ok());
}
