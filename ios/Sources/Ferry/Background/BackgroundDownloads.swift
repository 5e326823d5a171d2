// Why this file: the decisions of handing downloads to the OS, in one place, written against
// `BackgroundTransport` so they run the same (and are tested) on Linux as on iOS. The engine owns
// the rules (which ranges, whether a chunk is good, what to cancel); this type carries them out:
// create every OS task at hand-off, stage each body inside the callback, ingest on one serial
// queue, act on each outcome, and give the OS back its completion handler once the ingests are
// done. How transport events are handled: BackgroundDownloads+Events.swift.

import Foundation
import FerryBindings

/// Hands a downloader's tasks to the OS's background transfers and brings the bytes back.
///
/// ```swift
/// let downloads = BackgroundDownloads(downloader: downloader,
///                                     transport: URLSessionTransport.background(identifier: "com.example.ferry"))
/// try await downloads.handOff()                 // entering the background
/// try await downloads.returnToForeground()     // back: reconcile, take stalled ranges back
/// ```
///
/// Make one per transport, at launch, and keep it for the life of the process. Pause, cancel and
/// remove handed-off tasks through it (or call `cancelRevokedTasks()` after doing so on the
/// downloader), so their OS tasks are cancelled too.
public final class BackgroundDownloads: Sendable {
    /// How the coordinator cuts, waits and reports.
    public struct Options: Sendable {
        /// How hand-offs cut and bound their leases (the engine's defaults: 32 MiB chunks).
        public var handoff: HandoffConfig
        /// Back in the foreground, OS tasks with no progress for this long are taken back.
        public var staleAfter: TimeInterval
        /// The OS's completion handler is called this long after it arrived even if ingests are
        /// still running (the OS would rather be told late than never).
        public var completionTimeout: TimeInterval
        /// Where the OS's completion handlers are called (the OS wants the main queue).
        public var completionQueue: DispatchQueue
        /// How long to wait before ingesting again a chunk whose write failed (disk full, say).
        public var deferredRetryDelay: TimeInterval
        /// How many times to try such a chunk in this process (the next launch tries again).
        public var deferredAttempts: Int

        public init(
            handoff: HandoffConfig = HandoffConfig(), staleAfter: TimeInterval = 20, completionTimeout: TimeInterval = 25,
            completionQueue: DispatchQueue = .main, deferredRetryDelay: TimeInterval = 5, deferredAttempts: Int = 3
        ) {
            self.handoff = handoff
            self.staleAfter = staleAfter
            self.completionTimeout = completionTimeout
            self.completionQueue = completionQueue
            self.deferredRetryDelay = deferredRetryDelay
            self.deferredAttempts = deferredAttempts
        }
    }

    /// What the coordinator did, for logs, UI and tests. Delivered on the queue that did it (the
    /// transport's delegate queue, the ingest queue, or the caller's task); keep observers quick.
    public enum Event: Sendable {
        /// OS tasks were created for these leases.
        case started([OsRangeRequest])
        /// A fetched chunk was moved into the staging folder.
        case staged(leaseId: String)
        /// The engine judged a staged chunk.
        case ingested(leaseId: String, outcome: IngestOutcome)
        /// An OS task ended without a body; its range went back to the engine.
        case released(leaseId: String, error: String?)
        /// The server refused a chunk with 401 or 403: the request's credentials need refreshing
        /// (the range went back to the engine, which fetches it with the task's headers).
        case credentialsNeeded(taskId: String?, leaseId: String, httpStatus: UInt16?)
        /// OS tasks were cancelled (their leases ended).
        case cancelled(tags: [String])
        /// A body arrived for a tag that names no lease this process knows (ended earlier, or not
        /// ours); it was deleted.
        case discarded(tag: String)
        /// Moving a body into staging failed; the body is lost and its range goes back.
        case stagingFailed(leaseId: String, error: FerryError)
        /// An operation failed (hand-off, reconcile, release...).
        case failed(operation: String, error: FerryError)
    }

    /// The downloader whose tasks are handed off.
    public let downloader: Downloader
    /// The OS's transfers.
    public let transport: any BackgroundTransport
    /// The options.
    public let options: Options

    /// The one queue every ingest and release runs on, in order (ingests block: they copy and sync).
    let ingestQueue: DispatchQueue
    let observer: (@Sendable (Event) -> Void)?
    let state = Locked(State())

    /// What the coordinator remembers (in memory only: everything durable is the engine's).
    struct State {
        /// Lease of each OS tag this process has seen (never forgotten, so a late body of an ended
        /// lease still reaches the engine, which deletes it).
        var leases: [String: Lease] = [:]
        /// Tags whose body was taken care of (staged, or dropped as a duplicate) and whose
        /// `completed` is still to come, with how many such bodies.
        var staged: [String: Int] = [:]
        /// Leases with a chunk staged or being ingested by this process: a second body for one of
        /// them is not staged over the first (an ingest reads the answer, then the body).
        var busy: Set<String> = []
        /// Tags this process cancelled: their `completed` needs no release.
        var cancelled: Set<String> = []
        /// Duplicate OS tasks cancelled by a reconcile, per tag: their cancellations are not the
        /// surviving task's end, and release nothing.
        var duplicatesCancelled: [String: Int] = [:]
        /// Tags whose duplicates a reconcile is cancelling right now, and the cancellations that
        /// arrived before it learnt how many it cancelled (the OS may report one at once).
        var duplicatesCancelling: Set<String> = []
        var earlyDuplicateEnds: [String: Int] = [:]
        /// The OS's completion handlers waiting for the ingests.
        var completions: [CallOnce] = []
        /// The OS said it delivered everything before it gave a completion handler.
        var deliveredBeforeHandler = false
        /// Launched in the background: reconcile once the OS has delivered what it held.
        var reconcileAfterEvents = false
    }

    struct Lease: Sendable {
        let leaseId: String
        let taskId: String
    }

    var manager: DownloadManager { downloader.manager }

    /// Makes the coordinator and connects it to the transport (which may start delivering held
    /// events right away).
    /// - Parameters:
    ///   - ingestQueue: a serial queue for ingests (one is made when nil).
    ///   - observer: told what the coordinator did.
    public init(
        downloader: Downloader, transport: any BackgroundTransport, options: Options = Options(),
        ingestQueue: DispatchQueue? = nil, observer: (@Sendable (Event) -> Void)? = nil
    ) {
        self.downloader = downloader
        self.transport = transport
        self.options = options
        self.ingestQueue = ingestQueue ?? DispatchQueue(label: "dev.ferry.background-ingest", qos: .utility)
        self.observer = observer
        learn(manager.liveLeases())
        transport.setEventHandler { [weak self] event in self?.handle(event) }
    }

    // MARK: Hand-off and take-back

    /// Hands tasks to the OS (nil: every queued or running file task): their transfers stop with
    /// everything synced, every byte left is leased, and one OS task per lease is created now, all
    /// at once (iOS delays tasks created on later wakes).
    @discardableResult
    public func handOff(taskIds: [String]? = nil, config: HandoffConfig? = nil) async throws -> HandoffResult {
        let manager = self.manager
        let config = config ?? options.handoff
        let result = try await ferryAsync { try await manager.handOff(taskIds: taskIds, config: config) }
        start(result.requests)
        cancelRevokedTasks()
        return result
    }

    /// Hands off every queued or running file task except `excluded` (the downloads a continued
    /// processing task keeps in the engine), in the order a hand-off of all of them would take
    /// (priority, then enqueue order). With nothing excluded, this is `handOff()`.
    @discardableResult
    public func handOff(excluding excluded: Set<String>, config: HandoffConfig? = nil) async throws -> HandoffResult {
        guard !excluded.isEmpty else { return try await handOff(config: config) }
        let ids = await downloader.tasks().enumerated()
            .filter { $0.element.state.isActive && $0.element.output == "file" && !excluded.contains($0.element.taskId) }
            .sorted { ($0.element.priority, $1.offset) > ($1.element.priority, $0.offset) }
            .map(\.element.taskId)
        return try await handOff(taskIds: ids, config: config)
    }

    /// Brings the engine and the OS in line, at launch or on a wake: OS tasks of ended leases are
    /// cancelled, chunks staged before a kill are ingested, and ranges whose OS task vanished (a
    /// force-quit) are fetched by the engine in the foreground, or given to the OS again in the
    /// background.
    @discardableResult
    public func reconcile(foreground: Bool) async throws -> ReconcilePlan {
        let live = await transport.liveTasks()
        learn(manager.liveLeases())
        let manager = self.manager
        let config = options.handoff
        let plan = try ferry { try manager.reconcile(live: live, foreground: foreground, config: config) }
        cancel(plan.cancelOsTags)
        let tags = plan.duplicateOsTags
        state.withLock { $0.duplicatesCancelling.formUnion(tags) }
        let duplicates = await transport.cancelDuplicates(tagged: tags)
        state.withLock { s in
            for tag in tags {
                s.duplicatesCancelling.remove(tag)
                let early = s.earlyDuplicateEnds.removeValue(forKey: tag) ?? 0
                let expected = (duplicates[tag] ?? 0) - early
                if expected > 0 { s.duplicatesCancelled[tag, default: 0] += expected }
            }
        }
        for leaseId in plan.ingestLeaseIds { queueIngest(leaseId) }
        start(plan.export)
        cancelRevokedTasks()
        return plan
    }

    /// At launch: in the foreground, reconcile now; in the background (the OS relaunched the app
    /// to deliver events), reconcile once the OS has delivered them, so chunks that finished while
    /// the app was dead are staged first and not mistaken for vanished tasks.
    public func launched(inForeground foreground: Bool) async {
        if foreground {
            await attempt("reconcile") { try await self.reconcile(foreground: true) }
        } else {
            state.withLock { $0.reconcileAfterEvents = true }
        }
    }

    /// Back in the foreground: reconcile, then take back the leases whose OS task has shown no
    /// progress for `options.staleAfter` (the engine fetches them; healthy OS tasks finish).
    /// - Returns: the tags of the OS tasks cancelled by the take-back.
    @discardableResult
    public func returnToForeground() async throws -> [String] {
        try await reconcile(foreground: true)
        let manager = self.manager
        let staleMs = UInt64(max(0, options.staleAfter) * 1000)
        let stale = try ferry { try manager.takeBack(staleAfterMs: staleMs) }
        cancel(stale)
        cancelRevokedTasks()
        return stale
    }

    // MARK: Control

    /// Pauses a task and cancels its OS tasks (the bytes already ingested are kept).
    public func pause(_ taskId: String) async throws {
        try await downloader.pause(taskId)
        cancelRevokedTasks()
    }

    /// Cancels a task and its OS tasks.
    public func cancel(_ taskId: String) async throws {
        try await downloader.cancel(taskId)
        cancelRevokedTasks()
    }

    /// Forgets a task and cancels its OS tasks.
    public func remove(_ taskId: String, deletingFile: Bool = false) async throws {
        try await downloader.remove(taskId, deletingFile: deletingFile)
        cancelRevokedTasks()
    }

    /// Cancels the OS tasks of every lease the engine ended since the last call (a pause, cancel
    /// or remove on the downloader, a restart, a failure).
    public func cancelRevokedTasks() {
        cancel(manager.revokedOsTags())
    }

    /// The engine's live leases, as the requests their OS tasks were given.
    public func liveLeases() -> [OsRangeRequest] {
        manager.liveLeases()
    }

    // MARK: The OS's completion handler

    /// Stores the completion handler of `handleEventsForBackgroundURLSession`: it is called on
    /// `options.completionQueue` once the OS has delivered its events and their ingests are done,
    /// or after `options.completionTimeout`, whichever comes first, and exactly once.
    public func handleEventsForBackgroundSession(completionHandler: @escaping @Sendable () -> Void) {
        let once = CallOnce(completionHandler)
        let delivered = state.withLock { s -> Bool in
            if s.deliveredBeforeHandler {
                s.deliveredBeforeHandler = false
                return true
            }
            s.completions.append(once)
            return false
        }
        let queue = options.completionQueue
        queue.asyncAfter(deadline: .now() + options.completionTimeout) { once.call() }
        if delivered {
            ingestQueue.async { queue.async { once.call() } }
        }
    }

    /// Waits until every ingest and release queued so far has run.
    public func drain() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            ingestQueue.async { continuation.resume() }
        }
    }

    // MARK: Shared steps

    /// Remembers the leases' tags, and creates their OS tasks.
    func start(_ requests: [OsRangeRequest]) {
        guard !requests.isEmpty else { return }
        learn(requests)
        transport.startTasks(requests)
        observer?(.started(requests))
    }

    func learn(_ requests: [OsRangeRequest]) {
        guard !requests.isEmpty else { return }
        state.withLock { s in
            for r in requests { s.leases[r.osTag] = Lease(leaseId: r.leaseId, taskId: r.taskId) }
        }
    }

    /// Cancels the OS tasks with these tags (once each).
    func cancel(_ tags: [String]) {
        let fresh = state.withLock { s in tags.filter { s.cancelled.insert($0).inserted } }
        guard !fresh.isEmpty else { return }
        transport.cancelTasks(tagged: fresh)
        observer?(.cancelled(tags: fresh))
    }

    /// Runs `operation`, reporting a failure to the observer instead of throwing it.
    func attempt(_ operation: String, _ body: () async throws -> Void) async {
        do {
            try await body()
        } catch {
            observer?(.failed(operation: operation, error: FerryError(converting: error)))
        }
    }
}
