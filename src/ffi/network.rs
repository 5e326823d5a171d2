//! The network the host reports, each task's network policy, and why a task waits, exported.
//! Conversions only; the rules are `engine::model::network`'s and the manager's.

use super::error::DownloadError;
use super::manager::DownloadManager;
use crate::engine;

/// The network as the host sees it: on iOS from `NWPathMonitor` (`status == .satisfied`,
/// `isExpensive`, `isConstrained`), on Android from `ConnectivityManager` (a default network with
/// `NET_CAPABILITY_VALIDATED`, `isActiveNetworkMetered`, Data Saver).
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Record)]
pub struct NetworkState {
    /// Some path to the internet exists.
    pub available: bool,
    /// It costs money: cellular, a hotspot, a metered Wi-Fi.
    #[uniffi(default)]
    pub expensive: bool,
    /// The user asked to save data: Low Data Mode, Data Saver.
    #[uniffi(default)]
    pub constrained: bool,
}

impl From<NetworkState> for engine::NetworkState {
    fn from(n: NetworkState) -> Self {
        engine::NetworkState { available: n.available, expensive: n.expensive, constrained: n.constrained }
    }
}

impl From<engine::NetworkState> for NetworkState {
    fn from(n: engine::NetworkState) -> Self {
        NetworkState { available: n.available, expensive: n.expensive, constrained: n.constrained }
    }
}

/// Which networks a task may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum NetworkPolicy {
    /// Any available network (the default).
    Any,
    /// Neither an expensive nor a constrained one: large downloads that can wait for Wi-Fi.
    NotExpensive,
    /// Any but a constrained one (Low Data Mode, Data Saver).
    NotConstrained,
}

impl From<NetworkPolicy> for engine::NetworkPolicy {
    fn from(p: NetworkPolicy) -> Self {
        match p {
            NetworkPolicy::Any => engine::NetworkPolicy::Any,
            NetworkPolicy::NotExpensive => engine::NetworkPolicy::NotExpensive,
            NetworkPolicy::NotConstrained => engine::NetworkPolicy::NotConstrained,
        }
    }
}

impl From<engine::NetworkPolicy> for NetworkPolicy {
    fn from(p: engine::NetworkPolicy) -> Self {
        match p {
            engine::NetworkPolicy::Any => NetworkPolicy::Any,
            engine::NetworkPolicy::NotExpensive => NetworkPolicy::NotExpensive,
            engine::NetworkPolicy::NotConstrained => NetworkPolicy::NotConstrained,
        }
    }
}

/// Why a queued task waits instead of running.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum WaitReason {
    /// No network: it resumes, from its bytes, when one comes back.
    NetworkUnavailable,
    /// The network is expensive and the task's policy refuses that.
    NetworkExpensive,
    /// The network is constrained and the task's policy refuses that.
    NetworkConstrained,
    /// No host reports the network and nothing could be reached: it tries again after a backoff
    /// (only with `ManagerConfig.wait_when_unreachable`).
    NetworkUnreachable,
}

impl From<engine::WaitReason> for WaitReason {
    fn from(w: engine::WaitReason) -> Self {
        match w {
            engine::WaitReason::NetworkUnavailable => WaitReason::NetworkUnavailable,
            engine::WaitReason::NetworkExpensive => WaitReason::NetworkExpensive,
            engine::WaitReason::NetworkConstrained => WaitReason::NetworkConstrained,
            engine::WaitReason::NetworkUnreachable => WaitReason::NetworkUnreachable,
        }
    }
}

#[uniffi::export]
impl DownloadManager {
    /// Tells the engine the network's state; call it on every change your path monitor reports.
    /// Tasks the network refuses stop (their bytes kept) and wait, queued, with `waiting` in their
    /// status, spending no retries; they resume on their own when a report allows them. Until the
    /// first report the network counts as available, unmetered and unconstrained.
    pub fn set_network(&self, network: NetworkState) {
        self.inner.set_network(network.into());
    }

    /// The network as last reported.
    pub fn network(&self) -> NetworkState {
        self.inner.network().into()
    }

    /// Changes which networks a task may use; applies at once.
    pub fn set_network_policy(&self, task_id: String, policy: NetworkPolicy) -> Result<(), DownloadError> {
        Ok(self.inner.set_network_policy(&task_id, policy.into())?)
    }
}
