package dev.ferry

import dev.ferry.ffi.BatchItem
import dev.ferry.ffi.DownloadEvent
import dev.ferry.ffi.DownloadRequest
import dev.ferry.ffi.EventListener
import dev.ferry.ffi.Limits
import dev.ferry.ffi.ManagerConfig
import dev.ferry.ffi.TaskState
import java.io.File
import java.util.concurrent.CountDownLatch
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicInteger
import java.util.concurrent.atomic.AtomicLong
import org.junit.Test
import kotlin.test.assertTrue

/**
 * Prints what crossing the FFI costs from Kotlin. The figures are reported, never asserted: they
 * depend on the machine. Lines start with "MEASURE" for easy grepping.
 */
class MeasurementsTest : FerryTestBase() {

    @Test
    fun statusCallLatency() = runTest {
        val server = serve(size = 64 * 1024)
        val ferry = openFerry()
        val id = ferry.download(server.url, File(tmp.root, "status.bin")).taskId

        repeat(WARM_UP) {
            ferry.manager.status(id)
            ferry.status(id)
            Ferry.version
        }
        report("status() through the generated bindings", timeCalls { ferry.manager.status(id) })
        report("status() through the Ferry facade", timeCalls { ferry.status(id) })
        report("version() (baseline: no argument, a short string back)", timeCalls { Ferry.version })
    }

    @Test
    fun listenerEventCost() = runTest(timeoutMs = 110_000) {
        val count = 5_000
        // A slow server and one running task at a time: every other task stays queued, so the batch
        // emits exactly `count` "new task -> QUEUED" events.
        val server = serve(size = 16 * MiB, rate = 1_000)
        val ferry = openFerry(ManagerConfig(limits = Limits(maxRunningTasks = 1u)))
        val queued = AtomicInteger()
        val lastAt = AtomicLong()
        val all = CountDownLatch(1)
        val registration = ferry.manager.addListener(object : EventListener {
            override fun onEvent(event: DownloadEvent) {
                if (event is DownloadEvent.StateChanged && event.from == null && event.to == TaskState.QUEUED) {
                    if (queued.incrementAndGet() == count) {
                        lastAt.set(System.nanoTime())
                        all.countDown()
                    }
                }
            }
        })
        val dir = tmp.newFolder("batch")
        val requests = List(count) { DownloadRequest(url = server.url, destination = File(dir, "f$it.bin").path) }
        try {
            val start = System.nanoTime()
            val items = ferry.manager.enqueueBatch(requests)
            val enqueued = System.nanoTime()
            assertTrue(all.await(60, TimeUnit.SECONDS), "the listener got ${queued.get()} of $count events")
            val end = lastAt.get()
            assertTrue(items.all { it is BatchItem.Enqueued })

            println(
                "MEASURE enqueueBatch of $count file requests: %.1f ms (%.1f µs per request)"
                    .format((enqueued - start) / 1e6, (enqueued - start) / 1e3 / count),
            )
            val format = "MEASURE listener delivery: all $count QUEUED events %.1f ms after the batch started " +
                "(%.1f ms after enqueueBatch returned): %.1f µs per event"
            println(format.format((end - start) / 1e6, (end - enqueued) / 1e6, (end - start) / 1e3 / count))
        } finally {
            registration.cancel()
            registration.destroy()
        }
    }

    /** The sorted durations of [CALLS] calls, in nanoseconds. */
    private fun timeCalls(call: () -> Unit): LongArray {
        val samples = LongArray(CALLS) {
            val t = System.nanoTime()
            call()
            System.nanoTime() - t
        }
        samples.sort()
        return samples
    }

    private fun report(what: String, sorted: LongArray) {
        fun at(q: Double) = sorted[((sorted.size - 1) * q).toInt()] / 1e3
        println(
            "MEASURE %s: median %.2f µs, p90 %.2f µs, p99 %.2f µs over %d calls (after %d warm-up calls)"
                .format(what, at(0.5), at(0.9), at(0.99), sorted.size, WARM_UP),
        )
    }

    private companion object {
        const val WARM_UP = 5_000
        const val CALLS = 10_000
    }
}
