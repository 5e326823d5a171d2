// A downloader's events: the `AsyncStream` of `events()`, closure listeners with `addListener`,
// and the adapter from a closure to the generated listener protocol.

import Foundation
import FerryBindings

extension Downloader {
    /// Every event of this downloader from now on, in order: coalesced progress and every state
    /// change. Subscribe before enqueueing so no event of the new task is missed.
    ///
    /// The stream is fed by an engine listener; stopping the iteration (cancelling the task,
    /// dropping the stream) unregisters it. It finishes when the manager shuts down, through this
    /// downloader or any other handle of the same state directory, once the events queued before
    /// were delivered.
    /// - Parameter bufferingPolicy: what to keep while the consumer is behind (default: everything).
    public func events(
        bufferingPolicy: AsyncStream<DownloadEvent>.Continuation.BufferingPolicy = .unbounded
    ) -> AsyncStream<DownloadEvent> {
        let (stream, continuation) = AsyncStream.makeStream(of: DownloadEvent.self, bufferingPolicy: bufferingPolicy)
        let registration = manager.addListener(listener: ClosureListener { event in
            continuation.yield(event)
        })
        // Delivery ends when the registration is cancelled (the stream terminated) or when the
        // engine closed the subscription (a shutdown by any handle); either way, finish the stream.
        // The wait ends with the registration, so this task never outlives the stream's listener.
        Task.detached {
            await registration.waitEnded()
            continuation.finish()
        }
        let streams = self.streams
        let streamId = streams.newId()
        continuation.onTermination = { _ in
            registration.cancel()
            streams.remove(streamId)
        }
        if !streams.add(continuation, as: streamId) {
            continuation.finish()  // already shut down
        }
        return stream
    }

    /// Calls `handler` with every event from now on, in order, on a Ferry thread, until the returned
    /// subscription is cancelled or released. Whatever `handler` throws is logged by the engine and
    /// ignored: the listener stays registered and downloads go on.
    public func addListener(_ handler: @escaping @Sendable (DownloadEvent) throws -> Void) -> EventSubscription {
        EventSubscription(manager.addListener(listener: ClosureListener(handler)))
    }
}

/// A registered event listener. Delivery stops on `cancel()` or when this is released.
public final class EventSubscription: Sendable {
    private let registration: ListenerRegistration

    init(_ registration: ListenerRegistration) {
        self.registration = registration
    }

    /// Stops delivery (an event being delivered finishes).
    public func cancel() {
        registration.cancel()
    }

    /// Whether delivery was stopped.
    public var isCancelled: Bool { registration.isCancelled() }
}

/// The generated listener protocol over a closure.
final class ClosureListener: EventListener {
    private let handler: @Sendable (DownloadEvent) throws -> Void

    init(_ handler: @escaping @Sendable (DownloadEvent) throws -> Void) {
        self.handler = handler
    }

    func onEvent(event: DownloadEvent) throws {
        do {
            try handler(event)
        } catch let error as CallbackError {
            throw error
        } catch {
            throw CallbackError.Failed(message: String(describing: error))
        }
    }
}
