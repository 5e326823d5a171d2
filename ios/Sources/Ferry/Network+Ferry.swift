// The network the app reports to the engine, and each task's network policy: the `Downloader`
// calls, `NetworkState` conveniences, and what a waiting task's status says. The engine decides
// which tasks wait; NetworkMonitor.swift feeds it from NWPathMonitor on Apple platforms.

import FerryBindings

/// The network as the app sees it: available or not, expensive (cellular, a hotspot), constrained
/// (Low Data Mode).
public typealias NetworkState = FerryBindings.NetworkState

/// Which networks a task may use: `.any`, `.notExpensive` (neither expensive nor constrained:
/// large downloads that can wait for Wi-Fi) or `.notConstrained`.
public typealias NetworkPolicy = FerryBindings.NetworkPolicy

/// Why a queued task waits instead of running.
public typealias WaitReason = FerryBindings.WaitReason

extension NetworkState {
    /// No network.
    public static var offline: NetworkState { NetworkState(available: false, expensive: false, constrained: false) }
    /// An available network that is neither expensive nor constrained (Wi-Fi, Ethernet).
    public static var unrestricted: NetworkState { NetworkState(available: true, expensive: false, constrained: false) }
}

extension TaskStatus {
    /// Queued and held back by the network (none, or one its policy refuses): `waiting` says why.
    /// The task resumes from its bytes on its own once a reported network allows it.
    public var isWaitingForNetwork: Bool { state == .queued && waiting != nil }
}

extension Downloader {
    /// Tells the engine the network's state; call it on every change (see `NetworkMonitor`).
    /// Tasks the network refuses stop with their bytes kept and wait, `.queued` with `waiting`
    /// set, spending no retries; they resume on their own when a report allows them.
    public func setNetwork(_ network: NetworkState) {
        manager.setNetwork(network: network)
    }

    /// The network as last reported (available and unrestricted until the first report).
    public var network: NetworkState { manager.network() }

    /// Changes which networks a task may use; applies at once.
    public func setNetworkPolicy(_ policy: NetworkPolicy, of taskId: String) async throws {
        try ferry { try manager.setNetworkPolicy(taskId: taskId, policy: policy) }
    }
}
