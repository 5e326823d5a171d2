package dev.ferry

import dev.ferry.ffi.DownloadException
import dev.ferry.ffi.DownloadRequest
import dev.ferry.ffi.ErrorCode
import java.io.File
import org.junit.Test
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertIs
import kotlin.test.assertNull

/** The stable code table, and the codes of invalid requests as Kotlin sees them. */
class ErrorCodeTest : FerryTestBase() {

    @Test
    fun everyErrorCodeKeepsItsNumber() {
        // The same table, in the same order, as tests/error_codes.rs. Codes are append-only.
        val pinned = listOf(
            "invalid_url" to 1001, "unsupported_scheme" to 1002, "relative_destination" to 1003,
            "destination_dir_missing" to 1004, "destination_exists" to 1005,
            "destination_not_writable" to 1006, "invalid_connections" to 1007, "invalid_header" to 1008,
            "conflicting_outputs" to 1009, "invalid_checksum" to 1010, "task_id_conflict" to 1011,
            "destination_busy" to 1012, "task_not_found" to 1013, "invalid_state" to 1014,
            "invalid_task_id" to 1015, "invalid_config" to 1016, "missing_output" to 1017, "unknown_lease" to 1018,
            "root_unknown" to 1019,
            "connect_failed" to 2001, "timeout" to 2002, "http_client_error" to 2003, "not_found" to 2004,
            "server_error" to 2005, "too_many_requests" to 2006, "too_many_redirects" to 2007,
            "redirect_loop" to 2008, "range_mismatch" to 2009, "content_changed" to 2010,
            "truncated_body" to 2011, "tls" to 2012, "network" to 2013, "unsupported_encoding" to 2014,
            "access_denied" to 2015, "protocol_error" to 2016, "credentials_refresh_failed" to 2017,
            "disk_full" to 3001, "storage_io" to 3002, "permission_denied" to 3003,
            "state_dir_locked" to 3004, "database" to 3005, "locks_unavailable" to 3006,
            "checksum_mismatch" to 4001, "size_mismatch" to 4002, "memory_limit_exceeded" to 4003,
            "cancelled" to 5001, "interrupted" to 5002, "shut_down" to 5003, "sink_rejected" to 5004,
            "internal" to 9001,
        )
        assertEquals(pinned.size, ErrorCode.entries.size, "a code was added: pin it here and in tests/error_codes.rs")
        for ((code, expected) in ErrorCode.entries.zip(pinned)) {
            val (name, number) = expected
            assertEquals(name.uppercase(), code.name)
            assertEquals(number, code.number, "$name changed its number")
            assertEquals(number.toUShort(), code.value)
            assertEquals(code, ErrorCode.fromNumber(number))
        }
        assertNull(ErrorCode.fromNumber(1999))
    }

    @Test
    fun kindsFollowTheBands() {
        assertEquals(ErrorKind.INVALID_INPUT, ErrorCode.RELATIVE_DESTINATION.kind)
        assertEquals(ErrorKind.NETWORK, ErrorCode.TIMEOUT.kind)
        assertEquals(ErrorKind.STORAGE, ErrorCode.DISK_FULL.kind)
        assertEquals(ErrorKind.INTEGRITY, ErrorCode.CHECKSUM_MISMATCH.kind)
        assertEquals(ErrorKind.STOPPED, ErrorCode.SHUT_DOWN.kind)
        assertEquals(ErrorKind.INTERNAL, ErrorCode.INTERNAL.kind)
    }

    @Test
    fun invalidRequestsFailWithTheirCodes() = runTest {
        val ferry = openFerry()
        val absolute = File(tmp.root, "out.bin").path
        val cases = listOf(
            DownloadRequest(url = "http://127.0.0.1:9/file", destination = "relative/out.bin") to 1003,
            DownloadRequest(url = "ftp://127.0.0.1/file", destination = absolute) to 1002,
            DownloadRequest(url = "http://127.0.0.1:9/file", destination = absolute, connections = 0u) to 1007,
        )
        for ((request, number) in cases) {
            val e = assertFailsWith<FerryException> { ferry.enqueue(request) }
            assertEquals(number, e.code.number, e.message)
            assertEquals(ErrorKind.INVALID_INPUT, e.kind)
            // The generated bindings throw the same code, reachable through the `code` extension.
            val raw = assertFailsWith<DownloadException> { ferry.manager.enqueue(request) }
            assertIs<DownloadException.InvalidInput>(raw)
            assertEquals(number, raw.code.number)
            assertEquals(raw.detail, raw.toFerryException().detail)
        }
        assertEquals(emptyList(), ferry.list(), "nothing was enqueued")
    }
}
