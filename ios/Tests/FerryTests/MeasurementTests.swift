import Foundation
import XCTest
import Ferry
import FerryBindings

/// Costs of crossing the FFI from Swift. Printed, never asserted (the machine and the build
/// configuration decide the numbers).
final class MeasurementTests: FerryTestCase {
    func testMeasureStatusCall() async throws {
        let server = try startServer(size: 64 << 10)
        let downloader = try makeDownloader()
        let destination = try makeTemporaryDirectory().appendingPathComponent("f.bin").path
        let id = try await downloader.enqueue(DownloadRequest(url: server.url, destination: destination))
        _ = try await within(30, "download") { try await downloader.wait(for: id) }
        let calls = 10_000

        var facade: [UInt64] = []
        facade.reserveCapacity(calls)
        for _ in 0..<calls {
            let start = DispatchTime.now().uptimeNanoseconds
            _ = try await downloader.status(of: id)
            facade.append(DispatchTime.now().uptimeNanoseconds - start)
        }

        // The generated binding alone (same engine: same state directory).
        let raw = try DownloadManager.open(stateDir: downloader.stateDirectory)
        var generated: [UInt64] = []
        generated.reserveCapacity(calls)
        for _ in 0..<calls {
            let start = DispatchTime.now().uptimeNanoseconds
            _ = try raw.status(taskId: id)
            generated.append(DispatchTime.now().uptimeNanoseconds - start)
        }

        print("MEASURE status(): median \(micros(median(facade))) µs, p99 \(micros(percentile(facade, 0.99))) µs"
              + " over \(calls) calls through Downloader.status(of:) (async facade)")
        print("MEASURE status(): median \(micros(median(generated))) µs, p99 \(micros(percentile(generated, 0.99))) µs"
              + " over \(calls) calls through the generated DownloadManager.status(taskId:)")
    }

    func testMeasureListenerEventCost() async throws {
        let server = try startServer(size: 8 << 20, rate: 1_000_000)
        let downloader = try makeDownloader(config: ManagerConfig(limits: Limits(maxRunningTasks: 1)))
        let dir = try makeTemporaryDirectory()
        let count = 5_000
        let requests = (0..<count).map { i in
            DownloadRequest(url: server.url, destination: dir.appendingPathComponent("f\(i).bin").path, taskId: "t\(i)")
        }

        let queued = LockedBox(0)
        let firstAndLast = LockedBox<(UInt64, UInt64)>((0, 0))  // when the first and last arrived
        let allQueued = DispatchSemaphore(value: 0)
        let subscription = downloader.addListener { event in
            if case .stateChanged(_, nil, .queued, _) = event {
                let now = DispatchTime.now().uptimeNanoseconds
                let n = queued.update { $0 += 1; return $0 }
                firstAndLast.update { if n == 1 { $0.0 = now }; $0.1 = now }
                if n == count { allQueued.signal() }
            }
        }
        defer { subscription.cancel() }

        let start = DispatchTime.now().uptimeNanoseconds
        let results = await downloader.enqueue(requests)
        let enqueued = DispatchTime.now().uptimeNanoseconds
        let received = await Task.detached { allQueued.wait(timeout: .now() + 60) == .success }.value
        let end = DispatchTime.now().uptimeNanoseconds

        XCTAssertEqual(results.filter { (try? $0.get()) != nil }.count, count)
        XCTAssertTrue(received, "the listener received \(queued.get()) of \(count) queued events in 60 s")
        let total = end - start
        print("MEASURE enqueue(\(count) requests) in one batch: \(millis(enqueued - start)) ms"
              + " (\(micros((enqueued - start) / UInt64(count))) µs per request)")
        print("MEASURE listener: \(count) queued events received \(millis(total)) ms after the batch started,"
              + " \(millis(end - enqueued)) ms after it returned;"
              + " \(micros(total / UInt64(count))) µs per event (enqueue included),"
              + " \(micros((end - enqueued) / UInt64(count))) µs per event (drain after enqueue only)")
        let (first, last) = firstAndLast.get()
        print("MEASURE listener: first to last of the \(count) events: \(millis(last - first)) ms,"
              + " \(micros((last - first) / UInt64(count - 1))) µs per event delivered (first arrived"
              + " \(millis(first - start)) ms after the batch started)")
        await downloader.pauseAll()
    }

    private func median(_ samples: [UInt64]) -> UInt64 { percentile(samples, 0.5) }

    private func percentile(_ samples: [UInt64], _ p: Double) -> UInt64 {
        let sorted = samples.sorted()
        return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
    }

    private func micros(_ nanos: UInt64) -> String { String(format: "%.2f", Double(nanos) / 1_000) }
    private func millis(_ nanos: UInt64) -> String { String(format: "%.1f", Double(nanos) / 1_000_000) }
}
