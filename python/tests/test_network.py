"""Offline and metered networks: tasks the reported network refuses wait, with their reason, and
resume from their bytes when it allows them."""

import ferry
from ferry import NetworkPolicy, NetworkState, TaskState, WaitReason, background_download
from helpers import WAIT, fast_config, poll, sha256_of

OFFLINE = NetworkState(available=False, expensive=False, constrained=False)
CELLULAR = NetworkState(available=True, expensive=True, constrained=False)
WIFI = NetworkState(available=True, expensive=False, constrained=False)


def test_offline_tasks_wait_with_their_reason_and_resume_from_their_bytes(serve, tmp_path):
    server = serve(2 << 20, rate=1_000_000)
    with ferry.Manager(tmp_path / "state", fast_config()) as m:
        task = m.download(server.url, tmp_path / "tunnel.bin", task_id="tunnel")
        poll(lambda: m.status(task).bytes > 0)

        m.network = OFFLINE
        poll(lambda: m.status(task).waiting == WaitReason.NETWORK_UNAVAILABLE)
        waiting = m.status(task)
        assert waiting.state == TaskState.QUEUED and waiting.bytes > 0
        assert m.network == OFFLINE

        m.network = WIFI
        done = m.wait(task, timeout=WAIT)
        assert done.state == TaskState.COMPLETED and done.waiting is None
        assert sha256_of(tmp_path / "tunnel.bin") == server.sha256


def test_a_not_expensive_task_waits_on_cellular_and_runs_on_wifi(serve, tmp_path):
    server = serve(256 << 10)
    with ferry.Manager(tmp_path / "state", fast_config()) as m:
        m.network = CELLULAR
        task = m.download(server.url, tmp_path / "big.bin", network_policy="not_expensive")
        poll(lambda: m.status(task).waiting == WaitReason.NETWORK_EXPENSIVE)
        assert m.status(task).network_policy == NetworkPolicy.NOT_EXPENSIVE

        m.network = WIFI
        assert m.wait(task, timeout=WAIT).state == TaskState.COMPLETED
        assert sha256_of(tmp_path / "big.bin") == server.sha256


def test_changing_the_policy_lets_a_waiting_task_run(serve, tmp_path):
    server = serve(64 << 10)
    with ferry.Manager(tmp_path / "state", fast_config()) as m:
        m.network = NetworkState(available=True, expensive=False, constrained=True)
        task = m.download(server.url, tmp_path / "f", network_policy=NetworkPolicy.NOT_CONSTRAINED)
        poll(lambda: m.status(task).waiting == WaitReason.NETWORK_CONSTRAINED)
        m.set_network_policy(task, "any")
        assert m.wait(task, timeout=WAIT).state == TaskState.COMPLETED


def test_background_download_reports_the_waiting_reason(serve, tmp_path):
    server = serve(64 << 10)
    default = ferry.Manager.default()
    try:
        default.network = OFFLINE
        task = background_download.download(server.url, tmp_path / "later.bin")
        poll(lambda: background_download.status(task)["waiting"] == "network_unavailable")
        assert background_download.status(task)["state"] == "queued"
        default.network = WIFI
        poll(lambda: background_download.status(task)["state"] == "completed")
        assert background_download.status(task)["waiting"] is None
    finally:
        default.network = WIFI
        default.close()
