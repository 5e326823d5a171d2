"""Storage: a download that cannot fit the destination's file system fails at once with
`DISK_FULL` and the numbers, before a byte is written, and leaves no file behind."""

import ferry
from helpers import WAIT, fast_config

PIB = 1 << 50  # more than any test machine's disk


def test_a_download_larger_than_the_free_space_fails_at_once_with_the_numbers(serve, tmp_path):
    server = serve(PIB)
    with ferry.Manager(tmp_path / "state", fast_config()) as m:
        task = m.download(server.url, tmp_path / "huge.bin")
        st = m.wait(task, timeout=WAIT)
        assert st.state == ferry.TaskState.FAILED
        assert st.error.code == ferry.ErrorCode.DISK_FULL
        assert str(PIB) in st.error.message, st.error.message
        assert not (tmp_path / "huge.bin").exists()
        assert server.stats.body_bytes < 16 << 20, "failed at the start, not after gigabytes"
