//! `ferry list`: every task of the state directory with its progress, read without opening the
//! directory for writing (no lock taken: it works beside any number of running processes, and on
//! a directory it may not write). Progress is what the owners' journals last recorded; a task
//! whose process died mid-download shows as queued (`ferry resume` continues it).

use super::Failure;
use ferry::engine::{ErrorCode, Manager};
use std::io::Write;
use std::path::Path;

pub fn run(dir: &Path, json: bool) -> Result<u8, Failure> {
    let tasks = match Manager::list_from_outside(dir) {
        Ok(t) => t,
        Err(e) if e.code() == ErrorCode::TaskNotFound => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    // A reader that stops early (`ferry list | head`) ends the listing quietly.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for t in tasks {
        let written = if json {
            let v = serde_json::json!({
                "id": t.id.as_str(), "state": t.state.name(), "bytes": t.bytes, "total": t.total,
                "progress": t.progress(), "destination": t.destination, "url": ferry::engine::redact_url(&t.url),
                "error": t.error.as_ref().map(|e| serde_json::json!({"code": e.code.as_u16(), "message": e.message})),
            });
            writeln!(out, "{v}")
        } else {
            let total = t.total.map(|x| x.to_string()).unwrap_or_else(|| "?".into());
            let dest = t.destination.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
            writeln!(out, "{:<26} {:<9} {:>5.1}% {:>12}/{:<12} {}", t.id, t.state.name(), t.progress() * 100.0, t.bytes, total, dest)
        };
        if let Err(e) = written {
            return stdout_failed(e);
        }
    }
    out.flush().map_or_else(stdout_failed, |()| Ok(0))
}

/// A closed pipe is the reader's choice, not a failure; anything else is.
fn stdout_failed(e: std::io::Error) -> Result<u8, Failure> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(0)
    } else {
        Err(Failure { code: 3, message: format!("writing the listing: {e}") })
    }
}
