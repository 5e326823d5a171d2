//! Where a chunk waits between the OS's callback and its ingest: `<state dir>/staging/`.
//!
//! iOS deletes a download task's file when `didFinishDownloadingTo` returns, so the platform layer
//! moves it here inside the callback (a rename on the same volume; a copy when the temporary file
//! lives elsewhere, as on Linux) and writes the answer's status and headers beside it. The meta
//! file is written last, through a temporary name: a chunk counts as staged once its meta file
//! exists, so a process killed while staging leaves nothing that is taken for a whole chunk.
//! Staged chunks survive a killed process; ingest is idempotent, so one ingested twice (killed
//! after the journal, before the delete) is recognised and dropped.

use super::judge::ChunkMeta;
use super::request::check_lease_id;
use crate::engine::model::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The staging folder of one state directory.
#[derive(Clone, Debug)]
pub struct Staging {
    dir: PathBuf,
}

/// A staged chunk.
#[derive(Debug)]
pub struct Staged {
    /// The body.
    pub path: PathBuf,
    /// Its length.
    pub len: u64,
    /// The answer's status and headers.
    pub meta: ChunkMeta,
}

impl Staging {
    /// The staging folder of the state directory `state_dir`.
    pub fn new(state_dir: &Path) -> Staging {
        Staging { dir: state_dir.join("staging") }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn chunk(&self, lease: &str) -> PathBuf {
        self.dir.join(format!("{lease}.chunk"))
    }

    fn meta(&self, lease: &str) -> PathBuf {
        self.dir.join(format!("{lease}.meta"))
    }

    /// Moves the OS's file `from` into staging for `lease`, with the answer's `meta`. A chunk
    /// already staged for the lease is kept and `from` deleted (two bodies for one lease are the
    /// same range delivered twice): a staged chunk is never replaced under an ingest reading it.
    /// Returns whether this body was staged.
    pub fn stage(&self, lease: &str, from: &Path, meta: &ChunkMeta) -> Result<bool> {
        check_lease_id(lease)?;
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io("creating the staging folder", &e))?;
        let chunk = self.chunk(lease);
        if !self.meta(lease).exists() {
            // A body without its meta was left by a process killed while staging: not a chunk.
            let _ = std::fs::remove_file(&chunk);
        }
        let placed = match std::fs::hard_link(from, &chunk) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => {
                let partial = self.dir.join(format!("{lease}.copying.{}", std::process::id()));
                std::fs::copy(from, &partial).map_err(|e| Error::io("copying a fetched chunk into staging", &e))?;
                let linked = std::fs::hard_link(&partial, &chunk);
                let _ = std::fs::remove_file(&partial);
                match linked {
                    Ok(()) => true,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
                    Err(e) => return Err(Error::io("naming a staged chunk", &e)),
                }
            }
            Err(e) => return Err(Error::io("moving a fetched chunk into staging", &e)),
        };
        let _ = std::fs::remove_file(from);
        if !placed {
            return Ok(false);
        }
        let text = serde_json::to_vec(meta).map_err(|e| Error::internal(format!("chunk meta: {e}")))?;
        let tmp = self.dir.join(format!("{lease}.meta.tmp"));
        std::fs::write(&tmp, text).map_err(|e| Error::io("writing a staged chunk's answer", &e))?;
        std::fs::rename(&tmp, self.meta(lease)).map_err(|e| Error::io("naming a staged chunk's answer", &e))?;
        Ok(true)
    }

    /// The staged chunk of `lease`, if one is complete.
    pub fn load(&self, lease: &str) -> Result<Option<Staged>> {
        check_lease_id(lease)?;
        let text = match std::fs::read(self.meta(lease)) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("reading a staged chunk's answer", &e)),
        };
        let Ok(meta) = serde_json::from_slice::<ChunkMeta>(&text) else { return Ok(None) };
        let path = self.chunk(lease);
        match std::fs::metadata(&path) {
            Ok(m) => Ok(Some(Staged { path, len: m.len(), meta })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("reading a staged chunk", &e)),
        }
    }

    /// The leases with a complete staged chunk.
    pub fn staged(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut out: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".meta")).map(str::to_string))
            .filter(|lease| check_lease_id(lease).is_ok())
            .collect();
        out.sort();
        out
    }

    /// Deletes the leftovers of staging that a killed process never finished (a body without its
    /// meta, a copy under way, a meta not yet named) once they are older than `age`: staging
    /// takes milliseconds, so such a file is no one's. Complete chunks are never touched here.
    /// Returns how many were deleted.
    pub fn sweep_leftovers(&self, age: std::time::Duration) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return 0 };
        let now = std::time::SystemTime::now();
        let mut swept = 0;
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some((lease, rest)) = name.split_once('.') else { continue };
            let leftover = match rest {
                "chunk" => !self.meta(lease).exists(),
                "meta.tmp" => true,
                _ => rest.starts_with("copying."),
            };
            let old =
                entry.metadata().ok().and_then(|m| m.modified().ok()).and_then(|t| now.duration_since(t).ok()).is_some_and(|d| d >= age);
            if leftover && old && std::fs::remove_file(entry.path()).is_ok() {
                swept += 1;
            }
        }
        swept
    }

    /// Deletes whatever is staged for `lease` (meta first: a chunk without its meta is not staged).
    pub fn remove(&self, lease: &str) {
        if check_lease_id(lease).is_err() {
            return;
        }
        let _ = std::fs::remove_file(self.meta(lease));
        let _ = std::fs::remove_file(self.chunk(lease));
        let _ = std::fs::remove_file(self.dir.join(format!("{lease}.meta.tmp")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_is_staged_once_its_meta_exists_and_removed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let s = Staging::new(dir.path());
        let tmp = dir.path().join("CFNetworkDownload_x.tmp");
        std::fs::write(&tmp, b"0123456789").unwrap();
        let meta = ChunkMeta { status: 206, headers: vec![("Content-Range".into(), "bytes 0-9/20".into())] };
        assert!(s.stage("0a1b2c3d-1", &tmp, &meta).unwrap());
        assert!(!tmp.exists(), "moved, not copied");
        std::fs::write(&tmp, b"another body").unwrap();
        assert!(!s.stage("0a1b2c3d-1", &tmp, &meta).unwrap(), "a second body for the lease is a duplicate");
        assert!(!tmp.exists(), "and is dropped");
        assert_eq!(std::fs::read(dir.path().join("staging/0a1b2c3d-1.chunk")).unwrap(), b"0123456789", "the first stays");
        let got = s.load("0a1b2c3d-1").unwrap().unwrap();
        assert_eq!((got.len, &got.meta), (10, &meta));
        assert_eq!(s.staged(), vec!["0a1b2c3d-1".to_string()]);
        std::fs::remove_file(dir.path().join("staging/0a1b2c3d-1.meta")).unwrap();
        assert!(s.load("0a1b2c3d-1").unwrap().is_none(), "a body without its meta is not a staged chunk");
        assert!(s.staged().is_empty());
        s.remove("0a1b2c3d-1");
        assert!(!dir.path().join("staging/0a1b2c3d-1.chunk").exists());
    }

    #[test]
    fn leftovers_of_a_killed_staging_are_swept_once_old_and_complete_chunks_never() {
        let dir = tempfile::tempdir().unwrap();
        let s = Staging::new(dir.path());
        let tmp = dir.path().join("t");
        std::fs::write(&tmp, b"whole").unwrap();
        let meta = ChunkMeta { status: 206, headers: vec![("Content-Range".into(), "bytes 0-4/20".into())] };
        assert!(s.stage("0a1b2c3d-1", &tmp, &meta).unwrap());
        let staging = dir.path().join("staging");
        let leftovers = ["0a1b2c3d-2.chunk", "0a1b2c3d-3.copying.4242", "0a1b2c3d-4.meta.tmp"];
        for name in leftovers {
            std::fs::write(staging.join(name), b"half").unwrap();
        }
        assert_eq!(s.sweep_leftovers(std::time::Duration::from_secs(3600)), 0, "young leftovers may be a staging under way");
        let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        for name in leftovers.iter().chain(&["0a1b2c3d-1.chunk", "0a1b2c3d-1.meta"]) {
            std::fs::File::options().write(true).open(staging.join(name)).unwrap().set_modified(hour_ago).unwrap();
        }
        assert_eq!(s.sweep_leftovers(std::time::Duration::from_secs(3600)), 3);
        for name in leftovers {
            assert!(!staging.join(name).exists(), "{name}");
        }
        assert_eq!(s.load("0a1b2c3d-1").unwrap().unwrap().len, 5, "a complete chunk stays, however old");
    }

    #[test]
    fn only_lease_ids_name_staged_files() {
        let dir = tempfile::tempdir().unwrap();
        let s = Staging::new(dir.path());
        let tmp = dir.path().join("t");
        std::fs::write(&tmp, b"x").unwrap();
        for bad in ["../../etc/passwd", "0a1b2c3d", "x-1", ""] {
            assert!(s.stage(bad, &tmp, &ChunkMeta::default()).is_err(), "{bad:?}");
            assert!(s.load(bad).is_err());
        }
    }
}
