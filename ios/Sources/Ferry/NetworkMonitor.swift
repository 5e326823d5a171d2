// Feeds the engine from NWPathMonitor. Darwin only: the Network framework does not exist on
// Linux, so this file compiles to nothing there and is not built by ios/test-linux.sh; the
// decisions it leads to are the engine's, tested on every platform through `setNetwork`.

#if canImport(Network)
import Network
import FerryBindings

extension NetworkState {
    /// The state of an `NWPath`: available when satisfied, with its expense and constraint.
    public init(_ path: NWPath) {
        self.init(available: path.status == .satisfied, expensive: path.isExpensive, constrained: path.isConstrained)
    }
}

/// Reports every network change to a `Downloader`. Keep it alive as long as the downloader runs;
/// `cancel()` (or releasing it) stops the reports.
///
/// ```swift
/// let monitor = NetworkMonitor(downloader)
/// ```
public final class NetworkMonitor: @unchecked Sendable {
    private let monitor = NWPathMonitor()

    /// Starts reporting to `downloader`, the current path first.
    public init(_ downloader: Downloader, queue: DispatchQueue = DispatchQueue(label: "dev.ferry.network")) {
        monitor.pathUpdateHandler = { [weak downloader] path in
            downloader?.setNetwork(NetworkState(path))
        }
        monitor.start(queue: queue)
    }

    /// Stops reporting.
    public func cancel() {
        monitor.cancel()
    }

    deinit {
        monitor.cancel()
    }
}
#endif
