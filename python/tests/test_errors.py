"""Typed errors with stable codes: bad input, HTTP failures, and the pinned code table."""

import re
from pathlib import Path

import pytest

import ferry
from helpers import WAIT

ErrorCode = ferry.ErrorCode

# The same table as tests/error_codes.rs (append-only; apps store and switch on these numbers).
PINNED = [
    ("invalid_url", 1001), ("unsupported_scheme", 1002), ("relative_destination", 1003),
    ("destination_dir_missing", 1004), ("destination_exists", 1005), ("destination_not_writable", 1006),
    ("invalid_connections", 1007), ("invalid_header", 1008), ("conflicting_outputs", 1009),
    ("invalid_checksum", 1010), ("task_id_conflict", 1011), ("destination_busy", 1012),
    ("task_not_found", 1013), ("invalid_state", 1014), ("invalid_task_id", 1015), ("invalid_config", 1016),
    ("missing_output", 1017), ("unknown_lease", 1018), ("root_unknown", 1019), ("connect_failed", 2001), ("timeout", 2002),
    ("http_client_error", 2003),
    ("not_found", 2004), ("server_error", 2005), ("too_many_requests", 2006), ("too_many_redirects", 2007),
    ("redirect_loop", 2008), ("range_mismatch", 2009), ("content_changed", 2010), ("truncated_body", 2011),
    ("tls", 2012), ("network", 2013), ("unsupported_encoding", 2014), ("access_denied", 2015),
    ("protocol_error", 2016),
    ("credentials_refresh_failed", 2017),
    ("disk_full", 3001), ("storage_io", 3002), ("permission_denied", 3003), ("state_dir_locked", 3004),
    ("database", 3005), ("locks_unavailable", 3006), ("checksum_mismatch", 4001), ("size_mismatch", 4002),
    ("memory_limit_exceeded", 4003), ("cancelled", 5001), ("interrupted", 5002), ("shut_down", 5003),
    ("sink_rejected", 5004), ("internal", 9001),
]
RUST_TABLE = Path(__file__).resolve().parents[2] / "tests" / "error_codes.rs"


def test_every_error_code_is_pinned():
    assert [(c.name.lower(), c.value) for c in ErrorCode] == PINNED


def test_pinned_table_matches_the_rust_suite():
    rust = [(name, int(n)) for name, n in re.findall(r'\("([a-z_]+)",\s*(\d+)\)', RUST_TABLE.read_text())]
    assert rust == PINNED


def expect(kind, code, call, *args, **kwargs):
    with pytest.raises(kind) as info:
        call(*args, **kwargs)
    assert info.value.code == code, info.value
    assert info.value.message
    assert isinstance(info.value, ferry.DownloadError)
    return info.value


def test_relative_destination(server):
    expect(ferry.DownloadError.InvalidInput, ErrorCode.RELATIVE_DESTINATION, ferry.download, server.url, "rel/out.bin")
    assert ErrorCode.RELATIVE_DESTINATION.value == 1003


def test_unsupported_scheme(tmp_path):
    expect(ferry.DownloadError.InvalidInput, ErrorCode.UNSUPPORTED_SCHEME,
           ferry.download, "ftp://127.0.0.1/file", str(tmp_path / "f.bin"))
    assert ErrorCode.UNSUPPORTED_SCHEME.value == 1002


def test_zero_connections(server, manager, tmp_path):
    expect(ferry.DownloadError.InvalidInput, ErrorCode.INVALID_CONNECTIONS,
           manager.download, server.url, tmp_path / "f.bin", connections=0)
    assert ErrorCode.INVALID_CONNECTIONS.value == 1007


def test_outfile_with_chunk_callback(server, tmp_path):
    expect(ferry.DownloadError.InvalidInput, ErrorCode.CONFLICTING_OUTPUTS,
           ferry.download_url, server.url, outfile=str(tmp_path / "f.bin"), chunk_callback=lambda chunk: None)
    assert ErrorCode.CONFLICTING_OUTPUTS.value == 1009
    assert not (tmp_path / "f.bin").exists()


def test_more_bad_input(server, manager, tmp_path):
    invalid = ferry.DownloadError.InvalidInput
    expect(invalid, ErrorCode.INVALID_URL, manager.download, "not a url", tmp_path / "a.bin")
    expect(invalid, ErrorCode.DESTINATION_DIR_MISSING, manager.download, server.url, tmp_path / "no" / "a.bin")
    (tmp_path / "exists.bin").write_bytes(b"x")
    expect(invalid, ErrorCode.DESTINATION_EXISTS, manager.download, server.url, tmp_path / "exists.bin")
    expect(invalid, ErrorCode.INVALID_HEADER, manager.download, server.url, tmp_path / "h.bin",
           headers={"X-A": "a\r\nEvil: 1"})
    expect(invalid, ErrorCode.INVALID_CHECKSUM, manager.download, server.url, tmp_path / "c.bin", sha256="abc")
    expect(invalid, ErrorCode.MISSING_OUTPUT, manager.enqueue, ferry.DownloadRequest(url=server.url))


@pytest.mark.parametrize("path, code", [
    ("/status/404", ErrorCode.NOT_FOUND),
    ("/loop/a", ErrorCode.REDIRECT_LOOP),
    ("/redirect/50", ErrorCode.TOO_MANY_REDIRECTS),
])
def test_http_failures_are_recorded_on_the_task(server, manager, tmp_path, path, code):
    status = manager.wait(manager.download(server.base + path, tmp_path / "x.bin"), timeout=WAIT)
    assert status.state == ferry.TaskState.FAILED
    assert status.error.code == code
    with pytest.raises(ferry.DownloadError.Network) as info:
        ferry.raise_for_status(status)
    assert info.value.code == code


def test_checksum_mismatch_keeps_the_file_away(server, manager, tmp_path):
    dest = tmp_path / "bad.bin"
    status = manager.wait(manager.download(server.url, dest, sha256="0" * 64), timeout=WAIT)
    assert status.error.code == ErrorCode.CHECKSUM_MISMATCH
    assert not dest.exists()
    with pytest.raises(ferry.DownloadError.Integrity):
        ferry.raise_for_status(status)


def test_numbers_the_ffi_cannot_carry_name_their_field(server, manager, tmp_path):
    for connections in (-1, 1 << 32):
        with pytest.raises(ferry.DownloadError.InvalidInput) as info:
            manager.download(server.url, tmp_path / "c.bin", connections=connections)
        assert info.value.code == ferry.ErrorCode.INVALID_CONNECTIONS
    for field, value in (("priority", 1 << 40), ("rate_limit", -5), ("memory_limit", 1 << 64)):
        with pytest.raises(ValueError, match=field):
            manager.download(server.url, tmp_path / f"{field}.bin", **{field: value})
    with pytest.raises(ValueError, match="rate limit"):
        manager.rate_limit = 1 << 64
    assert not list(tmp_path.glob("*.bin*"))
