package dev.ferry

import dev.ferry.ffi.DownloadRequest
import dev.ferry.ffi.NetworkPolicy
import dev.ferry.ffi.NetworkState
import dev.ferry.ffi.TaskState
import dev.ferry.ffi.WaitReason
import java.io.File
import org.junit.Test
import kotlin.test.assertEquals
import kotlin.test.assertFalse
import kotlin.test.assertTrue

/** Offline and metered networks: tasks the reported network refuses wait, with their reason. */
class NetworkTest : FerryTestBase() {
    private val cellular = NetworkState(available = true, expensive = true, constrained = false)
    private val wifi = NetworkState(available = true, expensive = false, constrained = false)

    @Test
    fun offlineTasksWaitWithTheirReasonAndResumeFromTheirBytes() = runTest {
        val server = serve(size = 2 * MiB, rate = 1_000_000)
        val ferry = openFerry()
        val dest = File(tmp.newFolder(), "tunnel.bin")
        val id = ferry.enqueue(server.url, dest, taskId = "tunnel")
        eventually("some bytes") { ferry.status(id).bytes > 0u }

        ferry.setNetwork(NetworkStates.OFFLINE)
        eventually("waiting for the network") { ferry.status(id).isWaitingForNetwork }
        val waiting = ferry.status(id)
        assertEquals(TaskState.QUEUED, waiting.state)
        assertEquals(WaitReason.NETWORK_UNAVAILABLE, waiting.waiting)
        assertTrue(waiting.bytes > 0u, "its bytes are kept")
        assertEquals(NetworkStates.OFFLINE, ferry.network)

        ferry.setNetwork(wifi)
        val done = ferry.await(id)
        assertEquals(TaskState.COMPLETED, done.state)
        assertEquals(null, done.waiting)
        assertEquals(server.sha256, sha256(dest))
    }

    @Test
    fun anUnmeteredOnlyTaskWaitsOnCellularAndRunsOnWifi() = runTest {
        val server = serve(size = 256 * 1024L)
        val ferry = openFerry()
        val dest = File(tmp.newFolder(), "big.bin")
        ferry.setNetwork(cellular)
        val id = ferry.enqueue(downloadRequest(server.url, dest, networkPolicy = NetworkPolicy.NOT_EXPENSIVE))
        eventually("waiting for an unmetered network") { ferry.status(id).waiting == WaitReason.NETWORK_EXPENSIVE }
        assertEquals(NetworkPolicy.NOT_EXPENSIVE, ferry.status(id).networkPolicy)

        ferry.setNetwork(wifi)
        assertEquals(TaskState.COMPLETED, ferry.await(id).state)
        assertEquals(server.sha256, sha256(dest))
    }

    @Test
    fun changingThePolicyLetsAWaitingTaskRun() = runTest {
        val server = serve(size = 64 * 1024L)
        val ferry = openFerry()
        ferry.setNetwork(cellular)
        val id = ferry.enqueue(
            DownloadRequest(url = server.url, destination = File(tmp.newFolder(), "f").path, networkPolicy = NetworkPolicy.NOT_EXPENSIVE),
        )
        eventually("waiting") { ferry.status(id).isWaitingForNetwork }
        ferry.setNetworkPolicy(id, NetworkPolicy.ANY)
        assertEquals(TaskState.COMPLETED, ferry.await(id).state)
    }

    @Test
    fun connectivityManagerValuesMapToTheEngineState() {
        fun caps(vararg c: Int): (Int) -> Boolean = { it in c }
        val n = NetworkStates
        val validated = intArrayOf(n.NET_CAPABILITY_INTERNET, n.NET_CAPABILITY_VALIDATED)
        assertEquals(wifi, n.of(caps(*validated, n.NET_CAPABILITY_NOT_METERED), restrictBackgroundStatus = 1))
        assertEquals(cellular, n.of(caps(*validated), restrictBackgroundStatus = 1))
        assertEquals(wifi, n.of(caps(*validated, n.NET_CAPABILITY_TEMPORARILY_NOT_METERED), restrictBackgroundStatus = 3))
        val saver = n.of(caps(*validated), restrictBackgroundStatus = n.RESTRICT_BACKGROUND_STATUS_ENABLED)
        assertEquals(NetworkState(available = true, expensive = true, constrained = true), saver)
        assertFalse(n.of(caps(n.NET_CAPABILITY_INTERNET), restrictBackgroundStatus = 1).available, "a captive portal is no network")
        assertEquals(
            dev.ferry.ffi.NetworkPolicy.NOT_EXPENSIVE,
            dev.ferry.work.NetworkPolicy.UNMETERED.enginePolicy,
        )
    }
}
