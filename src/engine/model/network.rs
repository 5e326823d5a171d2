//! The network as the host reports it, what each task allows, and why a task waits.
//!
//! A phone knows far better than the engine whether it is offline, on cellular or in Low Data
//! Mode (`NWPathMonitor`, `ConnectivityManager`), and learns it before any connection fails. So
//! the host reports the network's state, and the engine decides here, for each task, whether it
//! may run on that network or must wait and why. A waiting task stays queued with a
//! [`WaitReason`] in its status instead of getting a state of its own: every caller that matches
//! on states keeps working, and waiting is what "queued" already means, with a cause.
//!
//! Until a host reports, the network counts as available, unmetered and unconstrained: a caller
//! that never reports (the command line, a server) sees no change.

use super::error::{Error, ErrorCode, Result};
use std::fmt;

/// The network as the host sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkState {
    /// Some path to the internet exists.
    pub available: bool,
    /// The path costs money: cellular, a personal hotspot, a metered Wi-Fi.
    pub expensive: bool,
    /// The user asked to save data: Low Data Mode on Apple platforms, Data Saver on Android.
    pub constrained: bool,
}

impl Default for NetworkState {
    fn default() -> Self {
        NetworkState { available: true, expensive: false, constrained: false }
    }
}

/// Which networks a task may use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum NetworkPolicy {
    /// Any available network.
    #[default]
    Any,
    /// Neither an expensive nor a constrained one (large downloads that can wait for Wi-Fi: a
    /// user in Low Data Mode wants them deferred as much as one on cellular).
    NotExpensive,
    /// Any but a constrained one.
    NotConstrained,
}

impl NetworkPolicy {
    /// Every policy.
    pub const ALL: [NetworkPolicy; 3] = [NetworkPolicy::Any, NetworkPolicy::NotExpensive, NetworkPolicy::NotConstrained];

    /// The persisted number.
    pub fn as_i64(self) -> i64 {
        match self {
            NetworkPolicy::Any => 0,
            NetworkPolicy::NotExpensive => 1,
            NetworkPolicy::NotConstrained => 2,
        }
    }

    /// From the persisted number; a number a newer version wrote reads as the strictest policy
    /// this version knows, so that no task uses a network its caller refused.
    pub fn from_i64(n: i64) -> NetworkPolicy {
        NetworkPolicy::ALL.into_iter().find(|p| p.as_i64() == n).unwrap_or(NetworkPolicy::NotExpensive)
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            NetworkPolicy::Any => "any",
            NetworkPolicy::NotExpensive => "not_expensive",
            NetworkPolicy::NotConstrained => "not_constrained",
        }
    }

    /// From its name (the command line and the tests use names).
    pub fn parse(name: &str) -> Result<NetworkPolicy> {
        NetworkPolicy::ALL.into_iter().find(|p| p.name() == name).ok_or_else(|| {
            Error::new(ErrorCode::InvalidConfig, format!("unknown network policy '{name}'; use any, not_expensive or not_constrained"))
        })
    }

    /// Why a task with this policy must wait on `network`, or `None` when it may run.
    pub fn wait_reason(self, network: NetworkState) -> Option<WaitReason> {
        if !network.available {
            return Some(WaitReason::NetworkUnavailable);
        }
        match self {
            NetworkPolicy::NotExpensive if network.expensive => Some(WaitReason::NetworkExpensive),
            NetworkPolicy::NotExpensive | NetworkPolicy::NotConstrained if network.constrained => Some(WaitReason::NetworkConstrained),
            _ => None,
        }
    }
}

impl fmt::Display for NetworkPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a queued task is not running although the engine could run it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WaitReason {
    /// The host reports no network: the task resumes, from its bytes, when one comes back.
    NetworkUnavailable,
    /// The network is expensive and the task's policy refuses that.
    NetworkExpensive,
    /// The network is constrained (Low Data Mode, Data Saver) and the task's policy refuses that.
    NetworkConstrained,
    /// No host reports the network, and the engine found that nothing could be reached: the task
    /// tries again after a backoff (only with `Config::wait_when_unreachable`).
    NetworkUnreachable,
}

impl WaitReason {
    /// Lower-case name, as statuses show it.
    pub fn name(self) -> &'static str {
        match self {
            WaitReason::NetworkUnavailable => "network_unavailable",
            WaitReason::NetworkExpensive => "network_expensive",
            WaitReason::NetworkConstrained => "network_constrained",
            WaitReason::NetworkUnreachable => "network_unreachable",
        }
    }
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIFI: NetworkState = NetworkState { available: true, expensive: false, constrained: false };
    const CELL: NetworkState = NetworkState { available: true, expensive: true, constrained: false };
    const LOW_DATA: NetworkState = NetworkState { available: true, expensive: false, constrained: true };
    const OFFLINE: NetworkState = NetworkState { available: false, expensive: false, constrained: false };

    #[test]
    fn each_policy_refuses_what_it_names() {
        use NetworkPolicy::*;
        use WaitReason::*;
        let cases = [
            (Any, WIFI, None),
            (Any, CELL, None),
            (Any, LOW_DATA, None),
            (Any, OFFLINE, Some(NetworkUnavailable)),
            (NotExpensive, WIFI, None),
            (NotExpensive, CELL, Some(NetworkExpensive)),
            (NotExpensive, LOW_DATA, Some(NetworkConstrained)),
            (NotExpensive, OFFLINE, Some(NetworkUnavailable)),
            (NotConstrained, CELL, None),
            (NotConstrained, LOW_DATA, Some(NetworkConstrained)),
            (NotConstrained, OFFLINE, Some(NetworkUnavailable)),
        ];
        for (policy, network, want) in cases {
            assert_eq!(policy.wait_reason(network), want, "{policy} on {network:?}");
        }
        assert_eq!(NetworkState::default(), WIFI, "no report means no restriction");
    }

    #[test]
    fn policies_round_trip_and_unknown_numbers_are_strict() {
        for p in NetworkPolicy::ALL {
            assert_eq!(NetworkPolicy::from_i64(p.as_i64()), p);
            assert_eq!(NetworkPolicy::parse(p.name()).unwrap(), p);
        }
        assert_eq!(NetworkPolicy::from_i64(99), NetworkPolicy::NotExpensive);
        assert_eq!(NetworkPolicy::parse("wifi").unwrap_err().code(), ErrorCode::InvalidConfig);
    }
}
