//! Engine configuration: limits, timeouts and cadences, with defaults chosen by measurement.

use super::error::{Error, ErrorCode, Result};
use super::retry::RetryPolicy;
use std::time::Duration;

/// Limits that can be changed while the engine runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Tasks transferring at the same time (the rest wait in the queue, by priority). A task whose
    /// bytes are all in no longer counts while its file is verified and synced, so the next one
    /// can start; it still reports `running` until its file is in place.
    pub max_running_tasks: u32,
    /// Connections to one host (`host:port`) across all tasks.
    pub max_connections_per_host: u32,
    /// Upper bound of the automatic connection count of one task.
    pub max_connections_per_task: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_running_tasks: 4, max_connections_per_host: 16, max_connections_per_task: 16 }
    }
}

impl Limits {
    /// Checks that every limit is at least 1.
    pub fn validate(&self) -> Result<()> {
        if self.max_running_tasks == 0 || self.max_connections_per_host == 0 || self.max_connections_per_task == 0 {
            return Err(Error::new(ErrorCode::InvalidConfig, "limits must be at least 1"));
        }
        Ok(())
    }
}

/// Engine configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Concurrency limits.
    pub limits: Limits,
    /// Time allowed to open a connection (TCP + TLS).
    pub connect_timeout: Duration,
    /// Longest silence on a connection (waiting for headers or body bytes) before it is retried.
    /// There is deliberately no total timeout: long transfers are fine while bytes flow.
    pub idle_timeout: Duration,
    /// Cadence of progress events.
    pub progress_interval: Duration,
    /// Retry tuning.
    pub retry: RetryPolicy,
    /// Smallest range worth splitting off for another connection.
    pub min_split_bytes: u64,
    /// How often the part file is synced so that journal offsets become durable (power-loss safe).
    pub sync_interval: Duration,
    /// Resume queued tasks (including those found running after a crash) when the manager opens.
    pub resume_on_open: bool,
    /// `User-Agent` header.
    pub user_agent: String,
    /// Extra trusted root certificates (PEM), e.g. a private CA, trusted besides the platform's
    /// store (or the bundled roots).
    pub extra_root_certificates_pem: Vec<String>,
    /// Trust Mozilla's bundled root store instead of the platform's verifier. On by default on
    /// Android, where the platform verifier needs a JNI initialisation a JNA-loaded library never
    /// gets; useful elsewhere where the system store is missing.
    pub bundled_tls_roots: bool,
    /// How many times one run may restart from zero (content changed, ranges refused) before the
    /// engine falls back to one plain stream.
    pub restart_budget: u32,
    /// Once the first byte of a response head has arrived, the rest of the head must arrive within
    /// this long, or the answer is a protocol error (a head trickled in a few bytes a second, or one
    /// that never ends). The wait for the first byte is bounded by the connect and idle timeouts.
    pub head_timeout: Duration,
    /// A connection that the server feeds slower than this many bytes a second, over
    /// `min_speed_window` of waiting for it, is given up (`timeout`), like a silent one: a server
    /// that trickles a byte every few seconds never trips the idle timeout and would hold the
    /// download for ever. Only the time spent waiting for the server counts, so a download the
    /// engine itself throttles (a bandwidth cap) is never judged slow. Connections open at the
    /// same time share the minimum (each is held to its share): a link fast enough as a whole is
    /// never judged slow connection by connection however many share it. The stalled attempt is
    /// retried like a timeout. An answer judged slow before any of its windows met the minimum
    /// spends the connection's retry budget, however many bytes it brought, so a steady trickle
    /// fails after the budget instead of reconnecting for ever; one that met the minimum before it
    /// slowed down is progress, and starts the budget afresh. 0: no minimum.
    pub min_speed: u64,
    /// The stretch of waiting over which `min_speed` is judged.
    pub min_speed_window: Duration,
    /// The proxy for every request: an `http://` URL (credentials become `Proxy-Authorization`),
    /// or `none` / `direct` for none at all. `None` reads the environment (`https_proxy`,
    /// `http_proxy`, `all_proxy`, upper case too). The platform's proxy settings are not read by
    /// the engine: the Swift and Kotlin facades pass them here.
    pub proxy: Option<String>,
    /// Hosts that bypass the proxy, as `no_proxy` spells them (comma-separated domains, IP
    /// addresses and networks, optional `:port`, `*` for all). `None` reads `no_proxy` /
    /// `NO_PROXY` when the proxy comes from the environment, and means no exception otherwise.
    pub no_proxy: Option<String>,
    /// Named roots (`name`, absolute path of an existing directory): a destination under one is
    /// stored relative to it (`@name/...`) and resolved against the roots of each open, so tasks
    /// follow a container that moves (iOS moves an app's container after an update or a restore).
    /// Names are 1–64 ASCII letters, digits, `_`, `-` or `.`, unique. See [`super::roots`].
    pub roots: Vec<(String, std::path::PathBuf)>,
    /// Cap on the bytes per second of all downloads together (`None` or 0: none). Change it while
    /// downloads run with `Manager::set_rate_limit`.
    pub rate_limit: Option<u64>,
    /// How long the host's credential refresh may take (see [`super::credentials`]) before the
    /// task fails with `credentials_refresh_failed`.
    pub refresh_timeout: Duration,
    /// Ask the host's credential source for fresh credentials before every run that resumes a
    /// task with bytes (after a pause, a relaunch, a take-back), not only after a 401 or 403.
    pub refresh_before_resume: bool,
    /// While no host reports the network (see [`super::network`]), a run that could not connect
    /// at all through its whole retry budget, while no other task had a connection, waits
    /// (`network_unreachable`) and tries again after a growing backoff instead of failing. Off by
    /// default: from here a dead server looks the same as no network.
    pub wait_when_unreachable: bool,
    /// The network at open, as the host knows it then (see [`super::network`]): the tasks the
    /// open resumes are judged against it before any of them starts. `None`: unknown until the
    /// first `Manager::set_network`, and counted as available and unrestricted.
    pub network: Option<super::network::NetworkState>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            limits: Limits::default(),
            connect_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(30),
            progress_interval: Duration::from_millis(250),
            retry: RetryPolicy::default(),
            min_split_bytes: 1 << 20,
            sync_interval: Duration::from_secs(2),
            resume_on_open: true,
            user_agent: concat!("ferry/", env!("CARGO_PKG_VERSION")).to_string(),
            extra_root_certificates_pem: Vec::new(),
            bundled_tls_roots: cfg!(target_os = "android"),
            restart_budget: 2,
            head_timeout: Duration::from_secs(10),
            min_speed: 1024,
            min_speed_window: Duration::from_secs(30),
            proxy: None,
            no_proxy: None,
            roots: Vec::new(),
            rate_limit: None,
            refresh_timeout: Duration::from_secs(30),
            refresh_before_resume: false,
            wait_when_unreachable: false,
            network: None,
        }
    }
}

impl Config {
    /// Checks the configuration.
    pub fn validate(&self) -> Result<()> {
        self.limits.validate()?;
        let zero = |d: Duration| d.is_zero();
        if zero(self.connect_timeout)
            || zero(self.idle_timeout)
            || zero(self.head_timeout)
            || zero(self.min_speed_window)
            || zero(self.progress_interval)
            || zero(self.sync_interval)
            || zero(self.refresh_timeout)
        {
            return Err(Error::new(ErrorCode::InvalidConfig, "timeouts and intervals must be positive"));
        }
        if self.min_split_bytes == 0 {
            return Err(Error::new(ErrorCode::InvalidConfig, "min_split_bytes must be positive"));
        }
        Ok(())
    }
}
