//! Which file a journal describes: device, inode and birth time, and the publish mark.

use super::*;

/// What tells one file from any other on this machine: device, inode and birth time (a rename
/// keeps all three; a file created in its place gets a new birth time even when the filesystem
/// hands out the freed inode number again), plus its length and modification time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// `dev:ino:birth` (birth in nanoseconds since the epoch, 0 where the filesystem keeps none).
    pub file: String,
    /// Length in bytes.
    pub len: u64,
    /// Modification time, nanoseconds since the epoch.
    pub modified: u128,
}

impl Identity {
    /// The identity of the file `m` describes.
    pub fn of(m: &std::fs::Metadata) -> Identity {
        use std::os::unix::fs::MetadataExt;
        let nanos = |t: std::io::Result<std::time::SystemTime>| {
            t.ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_nanos()).unwrap_or(0)
        };
        // Written out by hand: `format!` of a u128 cost 1,700 instructions, twice per download.
        let mut n = itoa::Buffer::new();
        let mut file = String::with_capacity(64);
        file.push_str(n.format(m.dev()));
        file.push(':');
        file.push_str(n.format(m.ino()));
        file.push(':');
        file.push_str(n.format(nanos(m.created())));
        Identity { file, len: m.len(), modified: nanos(m.modified()) }
    }

    /// `<file>@<len>:<modified>`: the mark a task carries while its verified file is renamed into
    /// place. Nothing writes the file after the mark is taken, so the destination matches it
    /// exactly when it is that file.
    pub fn publish_mark(&self) -> String {
        let mut n = itoa::Buffer::new();
        let mut mark = String::with_capacity(self.file.len() + 64);
        mark.push_str(&self.file);
        mark.push('@');
        mark.push_str(n.format(self.len));
        mark.push(':');
        mark.push_str(n.format(self.modified));
        mark
    }

    /// The file identity (`dev:ino:birth`) a stored value names, be it a plain identity or a
    /// publish mark.
    pub fn file_part(stored: &str) -> &str {
        stored.split('@').next().unwrap_or_default()
    }
}

/// The identity of the regular file at `path` (not following a symlink), if there is one.
pub fn identity_of(path: &Path) -> Option<Identity> {
    let m = std::fs::symlink_metadata(path).ok()?;
    m.is_file().then(|| Identity::of(&m))
}
