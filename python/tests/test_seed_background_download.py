"""Seed 000, the iOS `background_download` module: its two examples run on `ferry.background_download`.

Why: that module's users should be able to switch by changing one import. The quick-start script
and the AppUI example below are the seed's text with only `import background_download` changed to
`from ferry import background_download`; the tests swap in the URL of a `ferry.testing.TestServer`
(some with faults) for httpbin.org, point `~` at a temporary home, and give the AppUI example a
stub `appui` (no UI here).
"""

import os
import sys
import time
import types

import pytest

import ferry
from ferry import background_download
from helpers import WAIT, poll, sha256_of

SEED_URL = "https://httpbin.org/json"

QUICK_START = """\
import os
import time
from ferry import background_download

dest = os.path.join(os.path.expanduser("~/Documents"), "httpbin.json")

try:
    task_id = background_download.download(
        "https://httpbin.org/json",
        dest,
    )
    print("任务:", task_id)

    for _ in range(30):
        st = background_download.status(task_id)
        print(st.get("state"), st.get("progress"))
        if st.get("state") in ("completed", "failed", "cancelled"):
            break
        time.sleep(1)

    if st.get("state") == "completed":
        print("已保存:", st.get("path"))
    elif st.get("error"):
        print("失败:", st.get("error"))
except background_download.BackgroundDownloadError as exc:
    print("下载失败:", exc, f"code={exc.code}")
"""

APPUI_EXAMPLE = """\
import appui
import os
from ferry import background_download

DEST = os.path.join(os.path.expanduser("~/Documents"), "demo-download.json")
URL = "https://httpbin.org/json"

state = appui.State(
    task_id="",
    dl_state="空闲",
    progress="—",
    status="点击开始下载",
)


def poll():
    if not state.task_id:
        return
    try:
        st = background_download.status(state.task_id) or {}
        dl_state = st.get("state", "unknown")
        prog = st.get("progress", 0.0)
        state.batch_update(
            dl_state=dl_state,
            progress=f"{float(prog) * 100:.0f}%",
        )
        if dl_state == "completed":
            poll_timer.stop()
            state.status = f"完成: {st.get('path', DEST)}"
        elif dl_state == "failed":
            poll_timer.stop()
            state.status = f"失败: {st.get('error', '未知错误')}"
        elif dl_state == "cancelled":
            poll_timer.stop()
            state.status = "已取消"
    except background_download.BackgroundDownloadError as exc:
        poll_timer.stop()
        state.status = f"查询失败: {exc}"


poll_timer = appui.Timer(interval=0.5, repeats=True, action=poll)


def start_download():
    try:
        task_id = background_download.download(URL, DEST)
        state.batch_update(
            task_id=task_id or "",
            dl_state="running",
            progress="0%",
            status="下载中…",
        )
        poll_timer.start()
    except background_download.BackgroundDownloadError as exc:
        state.status = f"启动失败: {exc}"


def cancel_download():
    if not state.task_id:
        return
    try:
        background_download.cancel(state.task_id)
        poll_timer.stop()
        state.batch_update(dl_state="cancelled", status="已请求取消")
    except background_download.BackgroundDownloadError as exc:
        state.status = f"取消失败: {exc}"


def body():
    return appui.NavigationStack(
        appui.Form([
            appui.Section("任务", [
                appui.LabeledContent("状态", value=state.dl_state),
                appui.LabeledContent("进度", value=state.progress),
                appui.Text(state.task_id or "—")
                .font("caption")
                .foreground_color("secondaryLabel"),
            ]),
            appui.Section("操作", [
                appui.Button("开始后台下载", action=start_download)
                .button_style("bordered_prominent"),
                appui.Button("取消", action=cancel_download, role="destructive"),
                appui.Text(state.status).foreground_color("secondaryLabel"),
            ], footer="需网络;大文件更适合后台下载。"),
        ]).navigation_title("后台下载")
    )


appui.run(body, state=state)
"""


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A home directory with `Documents` (the seed's destination folder), as `~`."""
    (tmp_path / "home" / "Documents").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def run_quick_start(url, capsys):
    """Runs the quick-start script against `url`; returns its namespace and printed lines."""
    namespace = {"__name__": "__seed__"}
    exec(compile(QUICK_START.replace(SEED_URL, url), "quick_start", "exec"), namespace)
    return namespace, capsys.readouterr().out.splitlines()


def test_quick_start_downloads_and_prints_the_path(server, home, capsys):
    namespace, lines = run_quick_start(server.url, capsys)
    dest = home / "Documents" / "httpbin.json"
    assert lines[0] == f"任务: {namespace['task_id']}"
    assert lines[-2] == "completed 1.0"
    assert lines[-1] == f"已保存: {dest}"
    assert all(line.split()[0] in ("queued", "running") for line in lines[1:-2])
    assert sha256_of(dest) == server.sha256
    st = namespace["st"]
    assert st["bytes"] == st["total"] == server.size and st["error"] is None


def test_quick_start_rides_out_a_dropped_connection(serve, home, capsys):
    server = serve(2 << 20, drop_after=256 << 10, drop_requests=1)  # the first body stops at 256 KiB
    namespace, lines = run_quick_start(server.url, capsys)
    assert lines[-1] == f"已保存: {home / 'Documents' / 'httpbin.json'}"
    assert sha256_of(home / "Documents" / "httpbin.json") == server.sha256
    assert server.stats.requests >= 2, server.log


def test_quick_start_reports_a_failed_task(server, home, capsys):
    _, lines = run_quick_start(f"{server.base}/status/404", capsys)
    assert lines[-2] == "failed 0.0"
    assert lines[-1].startswith("失败: {'code': 2004, 'name': 'NOT_FOUND', 'message': ")
    assert not any((home / "Documents").iterdir())


def test_quick_start_catches_background_download_error(home, capsys):
    _, lines = run_quick_start("ftp://example.com/x.json", capsys)
    assert len(lines) == 1
    assert lines[0].startswith("下载失败: ") and lines[0].endswith(" code=1002")


def test_status_of_an_unknown_task_and_errors_of_the_calls(tmp_path):
    st = background_download.status("never-started")
    assert st["state"] == "unknown" and st["error"]["code"] == 1013
    with pytest.raises(background_download.BackgroundDownloadError) as info:
        background_download.cancel("never-started")
    assert info.value.code == 1013 and info.value.name == "TASK_NOT_FOUND"
    with pytest.raises(background_download.BackgroundDownloadError) as info:
        background_download.download("http://127.0.0.1:9/", tmp_path / "x", task_id="bad\0id")
    assert 1000 <= info.value.code < 2000 and str(info.value) == info.value.message


def test_states_are_strings_and_paused_tasks_say_so(serve, tmp_path):
    server = serve(8 << 20, rate=500_000)
    task_id = background_download.download(server.url, tmp_path / "slow.bin", task_id="bd-paused")
    st = poll(lambda: (lambda s: s if s["bytes"] > 0 else None)(background_download.status(task_id)))
    assert st["state"] == "running" and 0.0 < st["progress"] < 1.0 and st["total"] == server.size
    ferry.default_manager().pause(task_id)
    assert poll(lambda: background_download.status(task_id)["state"] == "paused")
    background_download.cancel(task_id)
    assert poll(lambda: background_download.status(task_id)["state"] == "cancelled", timeout=10)


class _Widget:
    """Any appui view: takes anything, and every modifier returns the view."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __getattr__(self, name):
        return lambda *args, **kwargs: self


class _State:
    def __init__(self, **fields):
        self.__dict__.update(fields)

    def batch_update(self, **fields):
        self.__dict__.update(fields)


class _Timer:
    def __init__(self, interval, repeats, action):
        self.action, self.running = action, False

    def start(self):
        self.running = True

    def stop(self):
        self.running = False


def load_appui_example(url, monkeypatch):
    """Runs the AppUI example (building its UI once) with a stub `appui`; returns its namespace."""
    appui = types.ModuleType("appui")
    appui.State, appui.Timer = _State, _Timer
    for view in ("NavigationStack", "Form", "Section", "LabeledContent", "Text", "Button"):
        setattr(appui, view, _Widget)
    appui.run = lambda body, state: body()
    monkeypatch.setitem(sys.modules, "appui", appui)
    namespace = {"__name__": "__seed__"}
    exec(compile(APPUI_EXAMPLE.replace(SEED_URL, url), "appui_example", "exec"), namespace)
    return namespace


def tick_until_stopped(namespace):
    """Fires the example's timer (every 0.05 s instead of 0.5 s) until it stops itself."""
    deadline = time.monotonic() + WAIT
    while namespace["poll_timer"].running:
        assert time.monotonic() < deadline, "the example's timer never stopped"
        namespace["poll_timer"].action()
        time.sleep(0.05)


def test_appui_example_start_and_poll(server, home, monkeypatch):
    namespace = load_appui_example(server.url, monkeypatch)
    namespace["start_download"]()
    state = namespace["state"]
    assert state.dl_state == "running" and state.status == "下载中…"
    tick_until_stopped(namespace)
    assert (state.dl_state, state.progress) == ("completed", "100%")
    assert state.status == f"完成: {namespace['DEST']}"
    assert sha256_of(namespace["DEST"]) == server.sha256


def test_appui_example_cancel(serve, home, monkeypatch):
    server = serve(8 << 20, rate=500_000)
    namespace = load_appui_example(server.url, monkeypatch)
    namespace["start_download"]()
    namespace["cancel_download"]()
    state = namespace["state"]
    assert (state.dl_state, state.status) == ("cancelled", "已请求取消")
    assert poll(lambda: background_download.status(state.task_id)["state"] == "cancelled", timeout=10)
    poll(lambda: not os.path.exists(namespace["DEST"]) and not any((home / "Documents").iterdir()), timeout=10)
