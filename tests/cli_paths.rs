//! File names the `ferry` command derives from URLs or reads from batch lists: however a name is
//! spelled (percent-encoded slashes and dots, `..`, absolute paths, control characters), the file
//! lands in the intended directory or the line is refused; nothing is written anywhere else.

mod support;

use ferry::engine::runtime;
use ferry::loopback::{Faults, LoopbackServer};
use std::path::Path;
use std::process::{Command, Stdio};
use support::*;

fn ferry(state: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
    c.arg("--state-dir").arg(state).stdin(Stdio::null());
    c
}

/// Every file under `root`, relative, sorted (the state directory left out).
fn files_under(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if rel == "state" {
                continue;
            }
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

#[test]
fn get_names_the_file_inside_the_current_directory_whatever_the_url_says() {
    let server = LoopbackServer::start(runtime::handle(), 0, Faults::new(64 * 1024)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let cwd = dir.path().join("a").join("b");
    std::fs::create_dir_all(&cwd).unwrap();
    let base = server.base();
    let cases = [
        ("..%2F..%2Fescape.bin", ".._.._escape.bin"),
        ("%2E%2E%2Fup.bin", ".._up.bin"),
        ("%2Fabs.bin", "_abs.bin"),
        ("a%00b", "a_b"),
        ("line%0Abreak", "line_break"),
        ("caf%C3%A9.bin", "café.bin"),
    ];
    for (segment, _) in cases {
        let o = ferry(&state).current_dir(&cwd).args(["get", "--quiet", &format!("{base}/file/{segment}")]).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{segment}: {}", String::from_utf8_lossy(&o.stderr));
    }
    let mut want: Vec<String> = cases.iter().map(|(_, name)| format!("a/b/{name}")).collect();
    want.sort();
    assert_eq!(files_under(dir.path()), want);
    for (_, name) in cases {
        assert_same(&read(&cwd.join(name)), &server.expected());
    }
    // A URL whose path ends in a dot-dot segment: the URL is normalised before naming the file.
    let o = ferry(&state).current_dir(&cwd).args(["get", "--quiet", &format!("{base}/file/x/%2e%2e")]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(cwd.join("index.html").exists(), "{:?}", files_under(dir.path()));
}

#[test]
fn batch_lines_naming_files_outside_the_directory_are_refused() {
    let server = LoopbackServer::start(runtime::handle(), 0, Faults::new(32 * 1024)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let url = server.url();
    let evil = dir.path().join("evil.bin");
    let list = format!(
        "{url} good.bin\n{url} ../escape.bin\n{url} {}\n{url} sub/nested.bin\n{url} ..\n{url} .\n{base}/file/..%2Ffrom-url.bin\n",
        evil.display(),
        base = server.base(),
    );
    let listing = dir.path().join("list.txt");
    std::fs::write(&listing, list).unwrap();
    let o = ferry(&state).args(["batch", "--quiet", "-i"]).arg(&listing).arg("-d").arg(&out).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "bad lines make the exit code say so: {stderr}");
    assert_eq!(stderr.matches("skipped").count(), 5, "{stderr}");
    assert_eq!(files_under(dir.path()), vec!["list.txt", "out/.._from-url.bin", "out/good.bin"]);
    assert_same(&read(&out.join("good.bin")), &server.expected());
}
