// Why this file: the decisions of continued downloads (iOS 26's `BGContinuedProcessingTask`). At
// the user's tap the app asks the system to keep it running for some downloads, so that Ferry's
// own engine goes on fetching them after the app leaves the foreground instead of handing them to
// background URLSession at once. While the task runs it reports their progress at a steady cadence
// (the system ends first the tasks that show little or none) and it ends when they do. If the
// system ends it early, or the user cancels it from the system UI, the downloads still running are
// handed off exactly as at background entry. Written against `ContinuedProcessing`, so that Linux
// tests drive it; `BackgroundHooks` owns it and calls it at each lifecycle moment.

import Foundation
import FerryBindings

/// Downloads kept in Ferry's engine by continued processing tasks after the app leaves the
/// foreground, with the URLSession hand-off as the fallback. Made by `BackgroundHooks` when it is
/// given a `ContinuedProcessing` scheduler; the app calls `BackgroundHooks.continueInBackground`.
@MainActor
public final class ContinuedDownloads {
    /// How continued downloads ask, report and end.
    public struct Options: Sendable {
        /// What a submission does when the system cannot start the task at once. With `.queue`, a
        /// request still waiting when the app leaves the foreground is withdrawn and its downloads
        /// are handed off with the others.
        public var strategy: ContinuedProcessingStrategy
        /// How often progress is reported while a task runs (the system wants about once a second
        /// at least; a task whose progress stalls is the first it ends).
        public var reportInterval: TimeInterval
        /// After an expiration, the task is completed once the hand-off is done, or after this
        /// long, whichever comes first (the hand-off goes on under background time).
        public var expirationTimeout: TimeInterval
        /// The subtitle while a task runs, from the number of completed downloads and the number
        /// covered ("3 of 5 files"); nil leaves the subtitle of the request in place.
        public var subtitle: (@Sendable (_ completed: Int, _ count: Int) -> String)?

        public init(
            strategy: ContinuedProcessingStrategy = .queue, reportInterval: TimeInterval = 0.5,
            expirationTimeout: TimeInterval = 10,
            subtitle: (@Sendable (_ completed: Int, _ count: Int) -> String)? = { "\($0) of \($1) files" }
        ) {
            self.strategy = strategy
            self.reportInterval = reportInterval
            self.expirationTimeout = expirationTimeout
            self.subtitle = subtitle
        }
    }

    /// The coordinator whose hand-off is the fallback.
    public let downloads: BackgroundDownloads
    /// The options.
    public let options: Options
    /// Whether the app is in the foreground (kept by `BackgroundHooks`). An expiration in the
    /// foreground hands nothing off: the engine goes on, and the next background entry hands the
    /// downloads off with the others.
    public internal(set) var inForeground = true

    private let scheduler: any ContinuedProcessing
    private let execution: any BackgroundExecution
    /// Runs work after the hooks' work queued before it (a hand-off never overlaps another).
    private let inOrder: @MainActor (@escaping @Sendable () async -> Void) -> Task<Void, Never>
    /// Requests submitted and tasks running or expiring.
    private var runs: [ContinuedRun] = []

    init(
        downloads: BackgroundDownloads, scheduler: any ContinuedProcessing, options: Options,
        execution: any BackgroundExecution,
        inOrder: @escaping @MainActor (@escaping @Sendable () async -> Void) -> Task<Void, Never>
    ) {
        self.downloads = downloads
        self.scheduler = scheduler
        self.options = options
        self.execution = execution
        self.inOrder = inOrder
    }

    /// The downloads a running continued task keeps in the engine: background entry does not hand
    /// them off. Those of a request the system has not started are not in it.
    public var coveredTaskIds: Set<String> {
        Set(runs.filter { $0.phase == .running }.flatMap(\.taskIds))
    }

    /// Asks the system for one continued processing task covering these downloads (call it in the
    /// foreground, at the user's tap). If the system refuses, nothing else changes: the downloads
    /// are handed off at background entry like the others.
    /// - Parameters:
    ///   - subtitle: shown until the task starts (default: `options.subtitle` of 0 completed).
    /// - Returns: the identifier the request was submitted under.
    /// - Throws: `ContinuedProcessingError.noDownloads`, or the scheduler's refusal.
    @discardableResult
    public func continueInBackground(taskIds: [String], title: String, subtitle: String? = nil) throws -> String {
        var seen = Set<String>()
        let ids = taskIds.filter { seen.insert($0).inserted }
        guard !ids.isEmpty else { throw ContinuedProcessingError.noDownloads }
        let shown = subtitle ?? options.subtitle?(0, ids.count) ?? ""
        let run = ContinuedRun(taskIds: ids, title: title, subtitle: shown)
        runs.append(run)
        let identifier: String
        do {
            let request = ContinuedProcessingRequest(title: title, subtitle: shown, strategy: options.strategy)
            identifier = try scheduler.submit(request) { [weak self, weak run] task in
                guard let self, let run else {
                    task.complete(success: false)  // nobody waits for it any more
                    return
                }
                self.launched(run, task)
            }
        } catch {
            run.phase = .ended
            runs.removeAll { $0 === run }
            throw error
        }
        run.identifier = identifier
        return identifier
    }

    // MARK: Lifecycle (from BackgroundHooks)

    /// The app left the foreground: requests the system has not started are withdrawn (their
    /// downloads are handed off with the others); returns the downloads running tasks keep.
    func enteredBackground() -> Set<String> {
        inForeground = false
        for run in runs where run.phase == .submitted {
            end(run, success: false)
        }
        return coveredTaskIds
    }

    /// The app is back in the foreground: running tasks go on (so does the engine).
    func enteredForeground() {
        inForeground = true
    }

    // MARK: A task's life

    /// The system started the task: report at once, then every `reportInterval`, until the
    /// downloads end or the task expires.
    private func launched(_ run: ContinuedRun, _ task: any ContinuedProcessingTask) {
        guard run.phase == .submitted else {
            task.complete(success: false)  // withdrawn before it started
            return
        }
        run.task = task
        run.phase = .running
        task.setExpirationHandler { [weak self, weak run] in
            guard let self, let run else { return }
            self.expired(run)
        }
        let interval = UInt64(max(0.01, options.reportInterval) * 1_000_000_000)
        run.ticker = Task { [weak self] in
            while !Task.isCancelled, run.phase == .running {
                guard let self else { return }
                await self.report(run)
                try? await Task.sleep(nanoseconds: interval)
            }
        }
    }

    /// Reports the downloads' aggregate progress and the subtitle; ends the task when every
    /// download has ended (success only if all completed).
    private func report(_ run: ContinuedRun) async {
        let downloader = downloads.downloader
        var statuses: [TaskStatus?] = []
        for id in run.taskIds {
            statuses.append(try? await downloader.status(of: id))  // a removed task has ended
        }
        guard run.phase == .running, let task = run.task else { return }
        let tally = ContinuedTally(statuses)
        // Never backwards (a restarted download loses its bytes; the system reads a drop as a stall).
        let completed = max(run.completed, tally.completed)
        let total = max(tally.total, completed)
        run.completed = completed
        task.update(completed: completed, total: total)
        if let format = options.subtitle {
            let subtitle = format(tally.completedCount, run.taskIds.count)
            if subtitle != run.subtitle {
                run.subtitle = subtitle
                task.updateTitle(run.title, subtitle: subtitle)
            }
        }
        if tally.allEnded {
            end(run, success: tally.allCompleted)
        }
    }

    /// The system ended the task early, or the user cancelled it. In the background, the downloads
    /// it covered that still run (and no running task covers) are handed off under background
    /// time, then the task is completed (unsuccessfully). In the foreground it is just completed.
    private func expired(_ run: ContinuedRun) {
        guard run.phase == .running else { return }
        run.phase = .expiring
        run.ticker?.cancel()
        run.ticker = nil
        guard !inForeground else {
            end(run, success: false)
            return
        }
        let kept = coveredTaskIds  // by other running tasks (this one no longer runs)
        let ids = run.taskIds.filter { !kept.contains($0) }
        let assertion = BackgroundAssertion(execution: execution, name: "Ferry continued hand-off")
        let timeout = UInt64(max(0, options.expirationTimeout) * 1_000_000_000)
        run.deadline = Task { [weak self] in
            try? await Task.sleep(nanoseconds: timeout)
            guard !Task.isCancelled else { return }
            self?.end(run, success: false)
        }
        let downloads = self.downloads
        _ = inOrder { [weak self] in
            await downloads.attempt("continued hand-off") {
                let active = await Self.active(ids, in: downloads.downloader)
                if !active.isEmpty { try await downloads.handOff(taskIds: active) }
            }
            await self?.end(run, success: false)
            await assertion.end()
        }
    }

    /// Completes the task (or withdraws the request), once.
    private func end(_ run: ContinuedRun, success: Bool) {
        guard run.phase != .ended else { return }
        let started = run.phase != .submitted
        run.phase = .ended
        run.ticker?.cancel()
        run.ticker = nil
        run.deadline?.cancel()
        run.deadline = nil
        runs.removeAll { $0 === run }
        if started, let task = run.task {
            task.setExpirationHandler(nil)
            task.complete(success: success)
        } else if let identifier = run.identifier {
            scheduler.cancel(identifier: identifier)
        }
    }

    /// The ids among `ids` of downloads still queued or running.
    nonisolated private static func active(_ ids: [String], in downloader: Downloader) async -> [String] {
        var active: [String] = []
        for id in ids {
            if let status = try? await downloader.status(of: id), status.state.isActive { active.append(id) }
        }
        return active
    }
}

/// One request, then the task it became.
@MainActor
final class ContinuedRun {
    enum Phase { case submitted, running, expiring, ended }

    let taskIds: [String]
    let title: String
    /// The subtitle shown now.
    var subtitle: String
    var identifier: String?
    var phase = Phase.submitted
    var task: (any ContinuedProcessingTask)?
    var ticker: Task<Void, Never>?
    var deadline: Task<Void, Never>?
    /// The completed units last reported.
    var completed: Int64 = 0

    init(taskIds: [String], title: String, subtitle: String) {
        self.taskIds = taskIds
        self.title = title
        self.subtitle = subtitle
    }
}

/// The downloads of a task, summed in bytes. A length not known yet counts as the bytes so far plus
/// one, so the fraction never reads complete while such a download runs, and `completed` still
/// grows with every byte (the system judges a task by its progress moving).
struct ContinuedTally {
    var completed: Int64 = 0
    var total: Int64 = 0
    var completedCount = 0
    var allEnded = true
    var allCompleted = true

    init(_ statuses: [TaskStatus?]) {
        for status in statuses {
            guard let status else {
                allCompleted = false  // gone (removed): ended, not completed
                continue
            }
            let bytes = Int64(clamping: status.bytes)
            if status.state == .completed {
                let length = max(bytes, Int64(clamping: status.total ?? 0))
                completed += length
                total += length
                completedCount += 1
            } else {
                let length = status.total.map { Int64(clamping: $0) } ?? bytes + 1
                completed += min(bytes, length)
                total += length
                allCompleted = false
            }
            if status.state.isActive { allEnded = false }
        }
    }
}
