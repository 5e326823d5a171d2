//! `ferry`: the command line face of the engine.
//!
//! Exit codes: 0 success; 2 usage; 3 bad input (1xxx codes); 4 network, HTTP or Range protocol
//! (2xxx); 5 local storage (3xxx); 6 integrity (4xxx); 1 anything else; 130 interrupted (the
//! download was paused and can be finished with `ferry resume`).

mod demo;
mod list;
mod names;
mod progress;
mod rate;
mod serve;

use clap::{Args, Parser, Subcommand};
use ferry::engine::{runtime, Config, Error, ErrorCode, Limits, Manager, Request, TaskInfo, TaskState};
use names::{file_name_of, plain_file_name};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "ferry", version, about = "Resumable multi-connection downloads that survive crashes.")]
struct Cli {
    /// Where the task table and journal live.
    #[arg(long, global = true, env = "FERRY_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Also trust the root certificates in this PEM file (repeatable), e.g. a private CA.
    #[arg(long = "ca-cert", global = true, value_name = "PEM")]
    ca_cert: Vec<PathBuf>,
    /// Proxy for every request (`http://[user:pass@]host:port`, or `none`); default: the
    /// environment's https_proxy, http_proxy, all_proxy and no_proxy.
    #[arg(long, global = true, value_name = "URL")]
    proxy: Option<String>,
    /// Give up a connection the server feeds slower than this many bytes a second over
    /// `--speed-time` (it is retried, and a steady trickle fails as `timeout`), as curl spells it:
    /// `1K`, `50K`; 0 for no minimum. Default: 1K.
    #[arg(long, global = true, value_name = "RATE", value_parser = rate::parse_rate)]
    speed_limit: Option<u64>,
    /// The seconds of waiting over which `--speed-limit` is judged. Default: 30.
    #[arg(long, global = true, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    speed_time: Option<u64>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Download one URL.
    Get(GetArgs),
    /// Download every URL listed in a file (one per line: `URL [file name]`).
    Batch(BatchArgs),
    /// List the tasks of the state directory.
    List {
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Finish everything unfinished in the state directory.
    Resume {
        /// Hide the progress display.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Show resume after a kill, offline: serve a file on loopback, kill a download part-way, resume it, verify it.
    Demo(demo::DemoArgs),
    /// Serve generated content on 127.0.0.1 (for tests and benchmarks); prints one JSON line, runs until stdin closes.
    Serve(serve::ServeArgs),
}

#[derive(Args, Debug)]
struct GetArgs {
    /// URL to download (http or https).
    url: String,
    /// Output file (default: the URL's file name in the current directory).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Connections (default: automatic, growing while it pays).
    #[arg(short = 'x', long)]
    connections: Option<u32>,
    /// Expected SHA-256; the file appears only if it matches.
    #[arg(long)]
    sha256: Option<String>,
    /// Extra request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Replace an existing output file.
    #[arg(long)]
    overwrite: bool,
    /// Task id (default: derived from the URL and output, so re-running the same command resumes it).
    #[arg(long)]
    id: Option<String>,
    /// Cap the download at this many bytes per second over all its connections, as curl spells
    /// it: `500K`, `2M`, `1G` (powers of 1024); 0 for none.
    #[arg(long, value_name = "RATE", value_parser = rate::parse_rate)]
    limit_rate: Option<u64>,
    /// Hide the progress display.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args, Debug)]
struct BatchArgs {
    /// File listing `URL [file name]` per line (`-` for stdin).
    #[arg(short, long)]
    input: PathBuf,
    /// Downloads at the same time.
    #[arg(short = 'j', long, default_value_t = 4)]
    jobs: u32,
    /// Directory to save into.
    #[arg(short, long)]
    dir: PathBuf,
    /// Connections per download (default: automatic).
    #[arg(short = 'x', long)]
    connections: Option<u32>,
    /// Replace existing files.
    #[arg(long)]
    overwrite: bool,
    /// Cap the whole batch (all downloads together) at this many bytes per second: `500K`, `2M`,
    /// `1G` (powers of 1024); 0 for none.
    #[arg(long, value_name = "RATE", value_parser = rate::parse_rate)]
    limit_rate: Option<u64>,
    /// Hide the progress display.
    #[arg(long, short)]
    quiet: bool,
}

/// A failure of the command, with the exit code it maps to.
struct Failure {
    code: u8,
    message: String,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure { code: exit_code(e.code()), message: e.to_string() }
    }
}

fn exit_code(code: ErrorCode) -> u8 {
    match code.as_u16() {
        1000..=1999 => 3,
        2000..=2999 => 4,
        3000..=3999 => 5,
        4000..=4999 => 6,
        _ => 1,
    }
}

fn main() -> ExitCode {
    // SAFETY: both calls run before any thread starts. A file size limit (ulimit -f) must surface
    // as an error, not kill the process; and two malloc arenas are plenty for a few I/O threads
    // (glibc's default of 8 per core only grows the resident set).
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    let cli = Cli::parse();
    let result = runtime::handle().block_on(run(cli));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("ferry: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn state_dir(cli: &Option<PathBuf>) -> PathBuf {
    if let Some(d) = cli {
        return absolute(d);
    }
    directories::ProjectDirs::from("", "", "ferry")
        .map(|p| p.data_dir().to_path_buf())
        .unwrap_or_else(|| std::env::temp_dir().join("ferry-state"))
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

async fn run(cli: Cli) -> Result<u8, Failure> {
    let dir = state_dir(&cli.state_dir);
    let mut roots = Vec::new();
    for path in &cli.ca_cert {
        let pem = std::fs::read_to_string(path).map_err(|e| Failure { code: 2, message: format!("--ca-cert {}: {e}", path.display()) })?;
        roots.push(pem);
    }
    let defaults = Config::default();
    let base = Config {
        extra_root_certificates_pem: roots,
        proxy: cli.proxy,
        resume_on_open: false,
        min_speed: cli.speed_limit.unwrap_or(defaults.min_speed),
        min_speed_window: cli.speed_time.map_or(defaults.min_speed_window, Duration::from_secs),
        ..defaults
    };
    match cli.command {
        Command::Get(a) => get(&dir, a, base).await,
        Command::Batch(a) => batch(&dir, a, base).await,
        Command::List { json } => list::run(&dir, json),
        Command::Resume { quiet } => resume(&dir, quiet, base).await,
        Command::Demo(a) => demo::run(a).await,
        Command::Serve(a) => serve::run(a).await,
    }
}

fn parse_header(h: &str) -> Result<(String, String), Failure> {
    match h.split_once(':') {
        Some((n, v)) => Ok((n.trim().to_string(), v.trim().to_string())),
        None => Err(Failure { code: 2, message: format!("header {h:?} is not 'Name: value'") }),
    }
}

fn default_id(url: &str, dest: &Path) -> String {
    let mut h = Sha256::new();
    h.update(url.as_bytes());
    h.update(b"\n");
    h.update(dest.as_os_str().as_encoded_bytes());
    let digest = h.finalize();
    let mut id = String::with_capacity(24);
    id.push_str("get-");
    id.push_str(&hex::encode(&digest[..10]));
    id
}

async fn get(dir: &Path, a: GetArgs, base: Config) -> Result<u8, Failure> {
    let dest = absolute(&a.output.clone().unwrap_or_else(|| PathBuf::from(file_name_of(&a.url))));
    let headers = a.headers.iter().map(|h| parse_header(h)).collect::<Result<Vec<_>, _>>()?;
    let mut limits = Limits::default();
    if let Some(x) = a.connections {
        limits.max_connections_per_host = limits.max_connections_per_host.max(x);
    }
    let manager = Manager::open(dir, Config { limits, rate_limit: a.limit_rate, ..base })?;
    let id = a.id.clone().unwrap_or_else(|| default_id(&a.url, &dest));
    if let Ok(existing) = manager.status(&id) {
        match existing.state {
            TaskState::Completed if !a.overwrite && still_published(&dest, existing.bytes, a.sha256.as_deref()) => {
                if !a.quiet {
                    eprintln!("already downloaded: {}", dest.display());
                }
                return Ok(0);
            }
            TaskState::Completed | TaskState::Cancelled => manager.remove(&id, false)?,
            _ => {}
        }
    }
    let request = Request {
        url: a.url.clone(),
        destination: Some(dest.clone()),
        task_id: Some(id),
        headers,
        connections: a.connections,
        sha256: a.sha256.clone(),
        overwrite: a.overwrite,
        ..Default::default()
    };
    let id = manager.enqueue(request)?;
    manager.resume(id.as_str())?;
    let mut outcome = progress::follow(&manager, std::slice::from_ref(&id), a.quiet).await;
    // The same download started in another process is followed there; if that process died
    // before finishing it, this one takes it over (a few times at most: each owner may die too).
    for _ in 0..8 {
        let orphaned = matches!(outcome, progress::Outcome::Settled) && manager.state(id.as_str()).ok() == Some(TaskState::Queued);
        if !orphaned || manager.runs_here(id.as_str()) {
            break;
        }
        manager.resume(id.as_str())?;
        outcome = progress::follow(&manager, std::slice::from_ref(&id), a.quiet).await;
    }
    finish(manager, outcome, &[id]).await
}

/// Whether `dest` still looks like the download that completed there: a regular file of its
/// length (and its SHA-256, when one was given). Anything else (the file removed, replaced, a
/// directory or symlink in its place) is downloaded again, or refused like any existing file.
fn still_published(dest: &Path, bytes: u64, sha256: Option<&str>) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(dest) else { return false };
    if !meta.is_file() || meta.len() != bytes {
        return false;
    }
    let Some(want) = sha256 else { return true };
    sha256_file(dest).is_ok_and(|got| got.eq_ignore_ascii_case(want))
}

/// The SHA-256 of a file's bytes, in lowercase hex.
fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match std::io::Read::read(&mut file, &mut buf)? {
            0 => return Ok(hex::encode(hasher.finalize())),
            n => hasher.update(&buf[..n]),
        }
    }
}

async fn batch(dir: &Path, a: BatchArgs, base: Config) -> Result<u8, Failure> {
    let text = if a.input.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| Failure { code: 3, message: e.to_string() })?
    } else {
        std::fs::read_to_string(&a.input).map_err(|e| Failure { code: 3, message: format!("{}: {e}", a.input.display()) })?
    };
    let out_dir = absolute(&a.dir);
    let jobs = a.jobs.max(1);
    let limits = Limits { max_running_tasks: jobs, max_connections_per_host: jobs.max(16), ..Limits::default() };
    let manager = Manager::open(dir, Config { limits, rate_limit: a.limit_rate, ..base })?;
    let mut requests = Vec::new();
    let mut bad = 0;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let mut parts = line.split_whitespace();
        let url = parts.next().unwrap_or_default().to_string();
        let name = match parts.next().map(plain_file_name) {
            Some(Ok(name)) => name.to_string(),
            Some(Err(e)) => {
                bad += 1;
                eprintln!("ferry: skipped: {e}");
                continue;
            }
            None => file_name_of(&url),
        };
        let dest = out_dir.join(name);
        requests.push(Request {
            task_id: Some(default_id(&url, &dest)),
            url,
            destination: Some(dest),
            connections: a.connections,
            overwrite: a.overwrite,
            ..Default::default()
        });
    }
    let results = manager.enqueue_batch(requests);
    let mut ids = Vec::new();
    for r in results {
        match r {
            Ok(id) => ids.push(id),
            Err(e) => {
                bad += 1;
                eprintln!("ferry: skipped: {e}");
            }
        }
    }
    for id in &ids {
        let _ = manager.resume(id.as_str());
    }
    let outcome = progress::follow(&manager, &ids, a.quiet).await;
    let code = finish(manager, outcome, &ids).await?;
    Ok(if code == 0 && bad > 0 { 3 } else { code })
}

async fn resume(dir: &Path, quiet: bool, base: Config) -> Result<u8, Failure> {
    let manager = Manager::open(dir, Config { resume_on_open: true, ..base })?;
    if manager.recovery().rebooted && !quiet {
        eprintln!("the machine rebooted since the last run: resuming from synced offsets only");
    }
    manager.resume_all();
    // Only what this process took: tasks that other processes run are theirs to finish.
    let ids: Vec<_> =
        manager.list().into_iter().filter(|t| t.state.is_active() && manager.runs_here(t.id.as_str())).map(|t| t.id).collect();
    if ids.is_empty() {
        if !quiet {
            eprintln!("nothing to resume");
        }
        manager.shutdown().await;
        return Ok(0);
    }
    let outcome = progress::follow(&manager, &ids, quiet).await;
    finish(manager, outcome, &ids).await
}

async fn finish(manager: Manager, outcome: progress::Outcome, ids: &[ferry::engine::TaskId]) -> Result<u8, Failure> {
    if let progress::Outcome::Interrupted = outcome {
        manager.pause_all();
        close(manager).await;
        eprintln!("ferry: interrupted; progress saved. Run `ferry resume` to finish.");
        return Ok(130);
    }
    // The state alone first: building the status of each of a thousand completed tasks only to
    // find none failed cost the exit of a batch more than a millisecond.
    let failed: Vec<TaskInfo> = ids
        .iter()
        .filter(|id| manager.state(id.as_str()).is_ok_and(|s| s != TaskState::Completed))
        .filter_map(|id| manager.status(id.as_str()).ok())
        .filter(|t| t.state != TaskState::Completed)
        .collect();
    // Removed meanwhile (by another process sharing the state directory).
    let removed: Vec<&ferry::engine::TaskId> = ids.iter().filter(|id| manager.state(id.as_str()).is_err()).collect();
    close(manager).await;
    for id in &removed {
        eprintln!("ferry: {id} was removed");
    }
    if failed.is_empty() {
        return Ok(if removed.is_empty() { 0 } else { 1 });
    }
    for t in &failed {
        match &t.error {
            Some(e) => eprintln!("ferry: {} failed: {} [{}]", t.id, e.message, e.code),
            None => eprintln!("ferry: {} is {}", t.id, t.state),
        }
    }
    let code = failed.iter().filter_map(|t| t.error.as_ref()).map(|e| exit_code(e.code)).next().unwrap_or(1);
    Ok(code)
}

/// Stops the manager (runners ended, journal flushed: everything it vouches for is on disk) and
/// leaves its memory to the process exit. Tearing down every task entry and closing each pooled
/// connection one by one only delayed the exit, by about 2 ms after a batch of 1000 files.
async fn close(manager: Manager) {
    manager.shutdown().await;
    std::mem::forget(manager);
}

/// Polls a child process until it exits or `timeout` passes (then kills it).
pub(crate) fn wait_child(child: &mut std::process::Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
