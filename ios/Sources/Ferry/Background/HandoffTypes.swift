// Why this file: the engine's hand-off types appear in the background API; these names let an app
// use them with `import Ferry` alone, as Ferry.swift does for the rest of the API.

import FerryBindings

/// How a hand-off cuts and bounds its leases (chunk size, lease caps, stop timeout).
public typealias HandoffConfig = FerryBindings.HandoffConfig

/// What a hand-off did: the new leases (`requests`) and the tasks left alone (`skipped`).
public typealias HandoffResult = FerryBindings.HandoffResult

/// One range for the OS to fetch: URL, every header to send, and the tag for `taskDescription`.
public typealias OsRangeRequest = FerryBindings.OsRangeRequest

/// The status and headers of the OS's answer for a chunk.
public typealias ChunkResponse = FerryBindings.ChunkResponse

/// What became of a chunk: committed, already committed, restart, rejected or deferred.
public typealias IngestOutcome = FerryBindings.IngestOutcome

/// An OS task found alive: its tag and the bytes it received.
public typealias OsTaskInfo = FerryBindings.OsTaskInfo

/// What a reconcile asks for: OS tasks to cancel, staged chunks to ingest, new leases, tasks the
/// engine now fetches itself.
public typealias ReconcilePlan = FerryBindings.ReconcilePlan
