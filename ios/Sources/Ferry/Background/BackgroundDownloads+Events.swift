// Why this file: what the coordinator does with each transport event, kept apart from the calls an
// app makes. A body is staged inside the callback (iOS deletes it on return) and ingested later on
// the serial ingest queue; a task that ends without a staged body releases its lease; the OS's
// completion handlers are called once the queued ingests have run.

import Foundation
import FerryBindings

extension BackgroundDownloads {
    /// Handles one event; called on the transport's delegate queue.
    func handle(_ event: BackgroundTransportEvent) {
        switch event {
        case let .progress(tag, bytes):
            manager.noteOsProgress(osTag: tag, bytesReceived: bytes)
        case let .finished(tag, file, response):
            finished(tag: tag, file: file, response: response)
        case let .completed(tag, error):
            completed(tag: tag, error: error)
        case .allEventsDelivered:
            allEventsDelivered()
        }
    }

    /// The lease a tag names, asking the engine when this process has not seen the tag yet.
    func lease(ofTag tag: String) -> Lease? {
        if let lease = state.withLock({ $0.leases[tag] }) { return lease }
        learn(manager.liveLeases())
        return state.withLock { $0.leases[tag] }
    }

    /// Moves the body into staging now (synchronously: the file is gone when this returns), then
    /// queues its ingest.
    private func finished(tag: String, file: URL, response: ChunkResponse) {
        guard let lease = lease(ofTag: tag) else {
            try? FileManager.default.removeItem(at: file)
            observer?(.discarded(tag: tag))
            return
        }
        // The same body twice (the OS delivered it again): the first one's ingest decides.
        guard state.withLock({ $0.busy.insert(lease.leaseId).inserted }) else {
            state.withLock { $0.staged[tag, default: 0] += 1 }
            try? FileManager.default.removeItem(at: file)
            observer?(.discarded(tag: tag))
            return
        }
        let manager = self.manager
        do {
            // False: another process staged this lease's chunk already; this body was dropped, and
            // the staged one is ingested all the same (ingest is idempotent).
            _ = try ferry { try manager.stageChunk(leaseId: lease.leaseId, filePath: file.path, response: response) }
        } catch {
            // `completed` follows and, finding nothing staged, releases the lease.
            state.withLock { _ = $0.busy.remove(lease.leaseId) }
            observer?(.stagingFailed(leaseId: lease.leaseId, error: FerryError(converting: error)))
            return
        }
        state.withLock { $0.staged[tag, default: 0] += 1 }
        observer?(.staged(leaseId: lease.leaseId))
        ingestQueue.async { [weak self] in self?.ingest(lease.leaseId, attempt: 1) }
    }

    /// The task ended. With its body staged, the ingest decides; without one (a failure, or a
    /// cancel by the OS or a force-quit), its range goes back to the engine.
    private func completed(tag: String, error: Error?) {
        let duplicate = state.withLock { s -> Bool in
            guard error != nil else { return false }
            if s.duplicatesCancelling.contains(tag) {
                // Ended while the reconcile that cancels its duplicates is still counting them:
                // taken as one of those (were it the survivor failing, the lease shows no
                // progress, and the next reconcile or take-back hands its range to the engine).
                s.earlyDuplicateEnds[tag, default: 0] += 1
                return true
            }
            guard let n = s.duplicatesCancelled[tag], n > 0 else { return false }
            s.duplicatesCancelled[tag] = n > 1 ? n - 1 : nil
            return true
        }
        // A duplicate this process cancelled: the lease's surviving task carries on.
        if duplicate { return }
        let (staged, cancelledHere) = state.withLock { s -> (Bool, Bool) in
            let staged = s.staged[tag, default: 0]
            s.staged[tag] = staged > 1 ? staged - 1 : nil
            return (staged > 0, s.cancelled.contains(tag))
        }
        // A task this process cancelled ended because its lease had ended: nothing to release.
        guard !staged, !cancelledHere, let lease = lease(ofTag: tag) else { return }
        let reason = error.map { String(describing: $0) }
        ingestQueue.async { [weak self] in
            guard let self else { return }
            let manager = self.manager
            do {
                try ferry { try manager.releaseLease(leaseId: lease.leaseId) }
                self.observer?(.released(leaseId: lease.leaseId, error: reason))
            } catch {
                self.observer?(.failed(operation: "release", error: FerryError(converting: error)))
            }
            self.cancelRevokedTasks()
        }
    }

    /// Queues the ingest of a chunk staged earlier (by a process that is gone), unless this
    /// process already staged or ingests one for the lease.
    func queueIngest(_ leaseId: String) {
        guard state.withLock({ $0.busy.insert(leaseId).inserted }) else { return }
        ingestQueue.async { [weak self] in self?.ingest(leaseId, attempt: 1) }
    }

    /// Ingests a staged chunk (blocking) and acts on the outcome. Runs on the ingest queue.
    private func ingest(_ leaseId: String, attempt: Int) {
        let outcome = manager.ingestStaged(leaseId: leaseId)
        if case .deferred = outcome, attempt < options.deferredAttempts {
            // The chunk stays staged and its lease live: try again later (the lease stays busy).
            let delay = options.deferredRetryDelay * Double(attempt)
            ingestQueue.asyncAfter(deadline: .now() + delay) { [weak self] in self?.ingest(leaseId, attempt: attempt + 1) }
        } else {
            // Settled (or left staged for the next launch's reconcile).
            state.withLock { _ = $0.busy.remove(leaseId) }
        }
        observer?(.ingested(leaseId: leaseId, outcome: outcome))
        var cancel: [String] = []
        switch outcome {
        case .committed, .alreadyCommitted:
            break
        case let .restart(_, _, tags):
            cancel = tags
        case let .rejected(taskId, _, _, httpStatus, _, credentials, tags):
            cancel = tags
            if credentials {
                let taskId = taskId ?? state.withLock { s in s.leases.values.first { $0.leaseId == leaseId }?.taskId }
                observer?(.credentialsNeeded(taskId: taskId, leaseId: leaseId, httpStatus: httpStatus))
            }
        case .deferred, .nothingStaged:
            break
        }
        self.cancel(cancel)
        cancelRevokedTasks()
    }

    /// The OS delivered everything it held: once the ingests queued so far have run (and, after a
    /// launch in the background, a reconcile), call the OS's completion handlers.
    private func allEventsDelivered() {
        let reconcile = state.withLock { s -> Bool in
            defer { s.reconcileAfterEvents = false }
            return s.reconcileAfterEvents
        }
        Task { [weak self] in
            guard let self else { return }
            await self.drain()
            if reconcile {
                await self.attempt("reconcile") { try await self.reconcile(foreground: false) }
                await self.drain()
            }
            let handlers = self.state.withLock { s -> [CallOnce] in
                defer { s.completions = [] }
                if s.completions.isEmpty { s.deliveredBeforeHandler = true }
                return s.completions
            }
            let queue = self.options.completionQueue
            queue.async { for handler in handlers { handler.call() } }
        }
    }
}
