//! What a caller asks for, and the validation that turns it into a [`TaskSpec`] or a typed error.
//!
//! Everything a caller can get wrong is caught here, before anything touches the network or the
//! disk: each mistake has its own [`ErrorCode`] and a message that says what to fix.

use super::error::{Error, ErrorCode, Result};
use super::task::{ChunkSink, Output, TaskId, TaskSpec};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Most connections one task may ask for.
pub const MAX_CONNECTIONS: u32 = 64;

/// A download request.
#[derive(Clone, Default)]
pub struct Request {
    /// http or https URL.
    pub url: String,
    /// Absolute destination path (file output).
    pub destination: Option<PathBuf>,
    /// The caller's task id; a UUID is generated when absent.
    pub task_id: Option<String>,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// `None` = automatic; `Some(n)` = exactly n connections.
    pub connections: Option<u32>,
    /// Expected SHA-256, hex.
    pub sha256: Option<String>,
    /// Higher runs first.
    pub priority: i32,
    /// Replace an existing destination.
    pub overwrite: bool,
    /// Memory output with this size limit.
    pub memory_limit: Option<u64>,
    /// Stream output.
    pub stream: Option<Arc<dyn ChunkSink>>,
    /// Cap on this task's bytes per second over all its connections (`None` or 0: none); stored
    /// with a file task.
    pub rate_limit: Option<u64>,
    /// Which networks the task may use (see [`super::network`]).
    pub network_policy: super::network::NetworkPolicy,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("url", &super::error::redact_url(&self.url))
            .field("destination", &self.destination)
            .field("task_id", &self.task_id)
            .field("connections", &self.connections)
            .finish_non_exhaustive()
    }
}

impl Request {
    /// A file download request.
    pub fn file(url: impl Into<String>, destination: impl Into<PathBuf>) -> Self {
        Request { url: url.into(), destination: Some(destination.into()), ..Default::default() }
    }

    /// Validates the request.
    pub fn validate(&self) -> Result<TaskSpec> {
        self.validate_with(&mut DirChecks::default())
    }

    /// Validates the request, reusing directory checks already made for other requests of a batch.
    pub fn validate_with(&self, dirs: &mut DirChecks) -> Result<TaskSpec> {
        self.to_spec(Some(dirs))
    }

    /// The spec this request describes with its destination taken as given, unchecked against the
    /// disk: what to compare with an existing task of the same id, whose destination may exist by
    /// now (see [`TaskSpec::same_request`]).
    pub fn as_given(&self) -> Result<TaskSpec> {
        self.to_spec(None)
    }

    fn to_spec(&self, dirs: Option<&mut DirChecks>) -> Result<TaskSpec> {
        let url = validate_url(&self.url)?;
        let id = match &self.task_id {
            Some(id) => TaskId::parse(id)?,
            None => TaskId::generate(),
        };
        let output = match (&self.destination, self.memory_limit, &self.stream) {
            (Some(dest), None, None) => Output::File(match dirs {
                Some(dirs) => validate_destination_with(dest, self.overwrite, dirs)?,
                None => dest.clone(),
            }),
            (None, Some(limit), None) => Output::Memory { limit },
            (None, None, Some(sink)) => Output::Stream(sink.clone()),
            (None, None, None) => {
                return Err(Error::new(ErrorCode::MissingOutput, "a request needs a destination, a memory limit or a stream"))
            }
            _ => return Err(Error::new(ErrorCode::ConflictingOutputs, "choose one output: a destination file, memory, or a stream")),
        };
        let connections = match self.connections {
            Some(0) => return Err(Error::new(ErrorCode::InvalidConnections, "connections must be at least 1")),
            Some(n) if n > MAX_CONNECTIONS => {
                return Err(Error::new(ErrorCode::InvalidConnections, format!("connections must be at most {MAX_CONNECTIONS}")))
            }
            other => other,
        };
        let headers = validate_headers(&self.headers)?;
        let sha256 = self.sha256.as_deref().map(validate_sha256).transpose()?;
        let (priority, overwrite, rate_limit, network_policy) =
            (self.priority, self.overwrite, self.rate_limit.filter(|&r| r > 0), self.network_policy);
        Ok(TaskSpec { id, url, output, headers, connections, sha256, priority, overwrite, rate_limit, network_policy })
    }
}

/// Parses and checks a download URL.
pub fn validate_url(raw: &str) -> Result<url::Url> {
    let url = url::Url::parse(raw.trim()).map_err(|e| Error::new(ErrorCode::InvalidUrl, format!("not a valid URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::new(ErrorCode::UnsupportedScheme, format!("scheme '{}' is not supported; use http or https", url.scheme())));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::new(ErrorCode::InvalidUrl, "URL has no host"));
    }
    // Port 0 parses but can never be connected to: say so now instead of after every retry.
    if url.port() == Some(0) {
        return Err(Error::new(ErrorCode::InvalidUrl, "URL has port 0"));
    }
    Ok(url)
}

/// Results of directory checks, shared by the requests of one batch, with an open handle on each
/// of the first [`DIR_HANDLES`] directories: names are looked up in it instead of being walked to
/// from the root for every file (two lookups per file; the walks were a third of the time it took
/// to record a batch of 1000 files). A directory that many names of the batch go to, and that is
/// small, is listed once instead: a name the listing proves absent needs no lookup (one `getdents`
/// in place of hundreds of lookups, each a search of the directory in the kernel), and any other
/// name is looked up as before.
#[derive(Debug, Default)]
pub struct DirChecks(super::hash::Map<std::ffi::OsString, Dir>);

#[derive(Debug)]
struct Dir {
    checked: Result<()>,
    handle: Option<std::os::fd::OwnedFd>,
    lookups: u32,
    /// Once listed: the names in the directory, ASCII-lowercased (see [`list_small_dir`]).
    listing: Option<super::hash::Set<Vec<u8>>>,
}

/// Most directory handles one batch keeps open.
const DIR_HANDLES: usize = 64;
/// Lookups in one directory after which it is listed instead.
const LIST_AFTER: u32 = 16;
/// Largest directory (its `st_size`, about 32 bytes per name on ext4) that is listed.
const LIST_AT_MOST: u64 = 256 << 10;

impl Dir {
    /// What `path`, a name in this directory, is (see [`entry_kind`]).
    fn entry_kind(&mut self, dir: &Path, path: &Path) -> Option<libc::mode_t> {
        use std::os::unix::ffi::OsStrExt;
        self.lookups += 1;
        if self.lookups == LIST_AFTER && self.listing.is_none() {
            self.listing = list_small_dir(dir);
        }
        if let (Some(names), Some(name)) = (&self.listing, path.file_name()) {
            if name.is_ascii() && !names.contains(&name.as_bytes().to_ascii_lowercase()) {
                return None;
            }
        }
        entry_kind(self.handle.as_ref().map(std::os::fd::AsFd::as_fd), path)
    }
}

/// The names in `dir`, ASCII-lowercased, when `dir` is small enough to be worth listing, can be
/// read, and holds only ASCII names. Lowercased because the file system may ignore case (vfat,
/// exFAT, casefolded ext4 and f2fs on Android, APFS), and every one of them folds ASCII the same
/// way: an ASCII name whose lowercase is not listed is absent under any of them. A non-ASCII entry
/// could fold onto an ASCII name (the Kelvin sign onto `k`), so such a directory is not listed.
fn list_small_dir(dir: &Path) -> Option<super::hash::Set<Vec<u8>>> {
    use std::os::unix::ffi::OsStrExt;
    if std::fs::metadata(dir).ok()?.len() > LIST_AT_MOST {
        return None;
    }
    let mut names = super::hash::Set::default();
    for entry in std::fs::read_dir(dir).ok()? {
        let name = entry.ok()?.file_name();
        if !name.is_ascii() {
            return None;
        }
        names.insert(name.as_bytes().to_ascii_lowercase());
    }
    Some(names)
}

/// Checks a destination path: absolute, in an existing writable directory, not an existing file
/// unless `overwrite`.
pub fn validate_destination(dest: &Path, overwrite: bool) -> Result<PathBuf> {
    validate_destination_with(dest, overwrite, &mut DirChecks::default())
}

fn check_dir(dir: &Path) -> Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(Error::new(ErrorCode::DestinationDirMissing, format!("'{}' is not a directory", dir.display()))),
        Err(_) => return Err(Error::new(ErrorCode::DestinationDirMissing, format!("directory '{}' does not exist", dir.display()))),
    }
    if !dir_writable(dir) {
        return Err(Error::new(ErrorCode::DestinationNotWritable, format!("directory '{}' is not writable", dir.display())));
    }
    Ok(())
}

fn validate_destination_with(dest: &Path, overwrite: bool, dirs: &mut DirChecks) -> Result<PathBuf> {
    if !dest.is_absolute() {
        return Err(Error::new(ErrorCode::RelativeDestination, format!("destination must be an absolute path, got '{}'", dest.display())));
    }
    if dest.file_name().is_none() || dest.to_string_lossy().ends_with('/') {
        return Err(Error::new(ErrorCode::DestinationNotWritable, "destination must name a file"));
    }
    check_name(dest)?;
    let dir = dest.parent().unwrap_or(Path::new("/"));
    // Keyed by the bytes (a spelling of its own only costs a check more), and looked up before an
    // owned key is made: most destinations of a batch share their directory.
    if !dirs.0.contains_key(dir.as_os_str()) {
        let checked = check_dir(dir);
        let handle = if checked.is_ok() && dirs.0.len() < DIR_HANDLES { open_dir(dir) } else { None };
        dirs.0.insert(dir.as_os_str().to_owned(), Dir { checked, handle, lookups: 0, listing: None });
    }
    let Some(checks) = dirs.0.get_mut(dir.as_os_str()) else {
        return Err(Error::internal("a directory check went missing"));
    };
    checks.checked.clone()?;
    match checks.entry_kind(dir, dest) {
        Some(libc::S_IFDIR) => Err(Error::new(ErrorCode::DestinationNotWritable, format!("'{}' is a directory", dest.display()))),
        // A device, FIFO or socket is never replaced by a file, even when asked to overwrite (as
        // root, `-o /dev/null --overwrite` would have replaced the system's /dev/null).
        Some(kind) if kind != libc::S_IFREG && kind != libc::S_IFLNK => Err(Error::new(
            ErrorCode::DestinationNotWritable,
            format!("'{}' is not a regular file (a device, FIFO or socket)", dest.display()),
        )),
        Some(_) if !overwrite => {
            Err(Error::new(ErrorCode::DestinationExists, format!("'{}' already exists (ask for overwrite to replace it)", dest.display())))
        }
        _ => {
            // The download is written to `<destination>.part`, created with truncation. For a new
            // task such a file is not the engine's (its own partials belong to tasks in the table),
            // so it is somebody's data: refuse rather than truncate it, unless asked to overwrite.
            let part = super::task::part_path(dest);
            if !overwrite && checks.entry_kind(dir, &part).is_some() {
                return Err(Error::new(
                    ErrorCode::DestinationExists,
                    format!(
                        "'{}' already exists and is not a partial download of this engine (remove it or ask for overwrite)",
                        part.display()
                    ),
                ));
            }
            Ok(dest.to_path_buf())
        }
    }
}

/// A handle on a directory to look names up in (`O_PATH` where there is one: it needs no read
/// permission); `None` if it cannot be opened, and the lookups walk the full path instead.
fn open_dir(dir: &Path) -> Option<std::os::fd::OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let flags = libc::O_PATH | libc::O_DIRECTORY;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let flags = libc::O_DIRECTORY;
    std::fs::OpenOptions::new().read(true).custom_flags(flags).open(dir).ok().map(std::os::fd::OwnedFd::from)
}

/// The type bits (`S_IFMT`) of what `path` names, without following a symlink; `None` for nothing
/// that can be looked at. Looked up in `dir`, the handle on `path`'s parent, when there is one.
fn entry_kind(dir: Option<std::os::fd::BorrowedFd<'_>>, path: &Path) -> Option<libc::mode_t> {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    if let (Some(dir), Some(name)) = (dir, path.file_name()) {
        let name = std::ffi::CString::new(name.as_bytes()).ok()?;
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: an open descriptor, a NUL-terminated name, and a buffer the call fills before
        // it is read.
        let found = unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), st.as_mut_ptr(), libc::AT_SYMLINK_NOFOLLOW) } == 0;
        // SAFETY: filled by the successful call above.
        return found.then(|| unsafe { st.assume_init() }.st_mode & libc::S_IFMT);
    }
    std::fs::symlink_metadata(path).ok().map(|m| std::os::unix::fs::MetadataExt::mode(&m) as libc::mode_t & libc::S_IFMT)
}

/// Longest file name the engine accepts: the name plus `.part` must fit the 255 bytes every
/// common filesystem allows, because the download is written to `<name>.part` beside it.
pub const MAX_FILE_NAME: usize = 255 - ".part".len();
/// Longest destination path (Linux's `PATH_MAX` is 4096 with the terminating NUL, less `.part`).
pub const MAX_PATH: usize = 4095 - ".part".len();

/// Checks what the filesystem would only refuse later, when the part file is created.
fn check_name(dest: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = dest.as_os_str().as_bytes();
    if bytes.contains(&0) {
        return Err(Error::new(ErrorCode::DestinationNotWritable, "destination path contains a NUL byte"));
    }
    let name = dest.file_name().map(|n| n.as_bytes().len()).unwrap_or(0);
    if name > MAX_FILE_NAME {
        return Err(Error::new(
            ErrorCode::DestinationNotWritable,
            format!("file name is {name} bytes; at most {MAX_FILE_NAME} fit beside its '.part' file"),
        ));
    }
    if bytes.len() > MAX_PATH {
        return Err(Error::new(
            ErrorCode::DestinationNotWritable,
            format!("destination path is {} bytes; at most {MAX_PATH} are supported", bytes.len()),
        ));
    }
    Ok(())
}

fn dir_writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return false };
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

/// Header names the engine (or HTTP itself) owns: ranges and their validators, the encoding,
/// framing and connection management, the `Host` (which must follow redirects), and conditionals
/// (a `304` or `412` answer would break the range protocol). A caller sending one is refused at
/// enqueue rather than silently overridden.
const RESERVED_HEADERS: &[&str] = &[
    "range",
    "if-range",
    "accept-encoding",
    "content-length",
    "transfer-encoding",
    "connection",
    "host",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "keep-alive",
    "proxy-connection",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
];

/// Longest header line (name and value) accepted; servers refuse far less (nginx: 8 KiB).
pub const MAX_HEADER_LINE: usize = 16 * 1024;
/// Longest total of all extra headers of one request.
pub const MAX_HEADERS_TOTAL: usize = 64 * 1024;

/// Checks one header: a token name, a value without control characters other than tab (CR and
/// LF would split the request), not too long, and not one the engine owns.
pub fn validate_header(name: &str, value: &str) -> Result<(String, String)> {
    let token = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
    if name.is_empty() || name.len() > 256 || !name.bytes().all(token) {
        return Err(Error::new(ErrorCode::InvalidHeader, format!("invalid header name {:?}", truncated(name))));
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(Error::new(ErrorCode::InvalidHeader, format!("header {name} has a line break or NUL in its value")));
    }
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(Error::new(ErrorCode::InvalidHeader, format!("header {name} has a control character in its value")));
    }
    if name.len() + value.len() > MAX_HEADER_LINE {
        return Err(Error::new(
            ErrorCode::InvalidHeader,
            format!("header {name} is {} bytes; at most {MAX_HEADER_LINE} are accepted", name.len() + value.len()),
        ));
    }
    if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(Error::new(ErrorCode::InvalidHeader, format!("header {name} is set by the engine")));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

/// Checks every header of a request, and their total size.
pub fn validate_headers(headers: &[(String, String)]) -> Result<Vec<(String, String)>> {
    let checked = headers.iter().map(|(n, v)| validate_header(n, v)).collect::<Result<Vec<_>>>()?;
    let total: usize = checked.iter().map(|(n, v)| n.len() + v.len()).sum();
    if total > MAX_HEADERS_TOTAL {
        return Err(Error::new(
            ErrorCode::InvalidHeader,
            format!("the extra headers total {total} bytes; at most {MAX_HEADERS_TOTAL} are accepted"),
        ));
    }
    Ok(checked)
}

fn truncated(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Checks an expected SHA-256 (64 hex digits).
pub fn validate_sha256(hex_digest: &str) -> Result<String> {
    let h = hex_digest.trim().to_ascii_lowercase();
    if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::new(ErrorCode::InvalidChecksum, "SHA-256 must be 64 hexadecimal digits"));
    }
    Ok(h)
}

#[cfg(test)]
mod tests;
