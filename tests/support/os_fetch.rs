//! A stand-in for the OS's fetcher in hand-off tests: one blocking HTTP/1.1 `GET` per lease with
//! exactly the headers the lease asks for, the body written to a file as iOS would hand it over,
//! and the status and headers as the platform layer would report them.

use ferry::engine::{ChunkMeta, HandoffOptions, Manager, OsRequest};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Hands every running download of `m` off in chunks of at most `chunk_bytes`; returns the
/// requests the OS would be given.
pub fn hand_off_in_chunks(m: &Manager, chunk_bytes: u64) -> Vec<OsRequest> {
    let m = m.clone();
    let options = HandoffOptions { chunk_bytes, ..HandoffOptions::default() };
    ferry::engine::runtime::handle().block_on(async move { m.hand_off(None, options).await }).expect("hand off").requests
}

/// Fetches `req` into `dir/<lease>.tmp`; returns the file and the answer's meta.
pub fn fetch(req: &OsRequest, dir: &Path) -> (PathBuf, ChunkMeta) {
    fetch_with(req, dir, &[])
}

/// As [`fetch`], with extra headers replacing the lease's own of the same name.
pub fn fetch_with(req: &OsRequest, dir: &Path, replace: &[(&str, &str)]) -> (PathBuf, ChunkMeta) {
    let url = url::Url::parse(&req.url).unwrap();
    let mut s = TcpStream::connect((url.host_str().unwrap(), url.port().unwrap())).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head =
        format!("GET {} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\n", url.path(), url.host_str().unwrap(), url.port().unwrap());
    for (n, v) in &req.headers {
        if replace.iter().any(|(r, _)| r.eq_ignore_ascii_case(n)) {
            continue;
        }
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    for (n, v) in replace {
        if !v.is_empty() {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let end = all.windows(4).position(|w| w == b"\r\n\r\n").expect("a head") + 4;
    let text = String::from_utf8_lossy(&all[..end]).to_string();
    let mut lines = text.split("\r\n");
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked { dechunk(&all[end..]) } else { all[end..].to_vec() };
    let path = dir.join(format!("{}.tmp", req.lease_id));
    std::fs::write(&path, body).unwrap();
    (path, ChunkMeta { status, headers })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&b[..line_end]).unwrap().split(';').next().unwrap().trim(), 16).unwrap();
        b = &b[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

/// A lease as the hand-off child process prints it (one JSON line), for a resource of `total`
/// bytes.
pub fn leased_line(line: &str, total: u64) -> OsRequest {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    let lease = v["lease"].as_str().unwrap().to_string();
    OsRequest {
        os_tag: format!("ferry1:{lease}"),
        lease_id: lease,
        task_id: String::new(),
        url: v["url"].as_str().unwrap().to_string(),
        headers: serde_json::from_value(v["headers"].clone()).unwrap(),
        start: v["start"].as_u64().unwrap(),
        end: v["end"].as_u64().unwrap(),
        total: Some(total),
        whole: false,
    }
}
