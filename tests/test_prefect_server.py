"""The same code against a separately started Prefect server (`prefect server start`, PREFECT_API_URL)."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import DATA


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-server-home")
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_API_URL": ""}
    prefect = Path(sys.executable).with_name("prefect")
    log = open(home / "server.log", "w")
    server = subprocess.Popen([str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{api}/health", timeout=2) as reply:
                if reply.status == 200:
                    break
        except OSError:
            pass
        if server.poll() is not None or time.time() > deadline:
            server.kill()
            pytest.fail("prefect server did not start: " + (home / "server.log").read_text()[-2000:])
        time.sleep(1)
    yield api
    _stop(server)
    log.close()


@pytest.mark.model
def test_callqa_run_reports_to_a_separately_started_server(prefect_server, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(DATA / "fmt_pcm16_8k_stereo.wav", folder / "clip.wav")
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "PREFECT_HOME": str(tmp_path / "client-home")}
    callqa = Path(sys.executable).with_name("callqa")
    done = subprocess.run([str(callqa), "run", str(folder), "--out", str(tmp_path / "out")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    request = urllib.request.Request(f"{prefect_server}/flow_runs/filter", data=json.dumps({}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as reply:
        runs = json.loads(reply.read())
    states = {(r["name"], r["state_type"]) for r in runs}
    assert any(state == "COMPLETED" for _, state in states), states
    flows = urllib.request.Request(f"{prefect_server}/flows/filter", data=b"{}",
                                   headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(flows, timeout=10) as reply:
        assert "callqa-transcribe" in {f["name"] for f in json.loads(reply.read())}
    assert not (tmp_path / "client-home" / "prefect.db").exists()  # no embedded server was started


@pytest.mark.model
def test_serve_schedules_the_night_and_a_deployment_run_processes_it(prefect_server, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(DATA / "long_hold_8k_stereo.flac", folder / "clip.flac")  # enough agent speech to be scored
    out = tmp_path / "out"
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "PREFECT_HOME": str(tmp_path / "client-home")}
    bindir = Path(sys.executable).parent
    log = open(tmp_path / "serve.log", "w")
    serve = subprocess.Popen([str(bindir / "callqa"), "serve", str(folder), "--out", str(out), "--name", "test",
                              "--cron", "0 2 * * *"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 90
        deployment = None
        while deployment is None and time.time() < deadline:
            request = urllib.request.Request(f"{prefect_server}/deployments/filter", data=b"{}",
                                             headers={"Content-Type": "application/json"}, method="POST")
            with urllib.request.urlopen(request, timeout=10) as reply:
                deployment = next((d for d in json.loads(reply.read()) if d["name"] == "test"), None)
            time.sleep(1)
        assert deployment is not None, (tmp_path / "serve.log").read_text()[-2000:]
        schedule = deployment["schedules"][0]["schedule"]
        assert (schedule["cron"], schedule["timezone"]) == ("0 2 * * *", "Asia/Shanghai")
        trigger = subprocess.run([str(bindir / "prefect"), "deployment", "run", "callqa-transcribe/test"], env=env,
                                 capture_output=True, text=True, timeout=120)
        assert trigger.returncode == 0, trigger.stdout + trigger.stderr
        deadline = time.time() + 240
        while not (out / "calls").exists() and time.time() < deadline:
            time.sleep(2)
        while time.time() < deadline:  # the served run finishes writing its tables
            if (out / "agent_scores").exists():
                break
            time.sleep(2)
        import pandas as pd

        calls = pd.read_parquet(out / "calls")
        assert calls["status"].tolist() == ["ok"], (tmp_path / "serve.log").read_text()[-2000:]
    finally:
        _stop(serve)
        log.close()


def test_serve_without_a_server_says_what_to_do(tmp_path):
    (tmp_path / "in").mkdir()
    env = {**os.environ, "PREFECT_API_URL": ""}
    done = subprocess.run([str(Path(sys.executable).with_name("callqa")), "serve", str(tmp_path / "in"), "--out",
                           str(tmp_path / "out")], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "prefect server start" in done.stderr


def _descendants(pid: int) -> list[int]:
    children, parents = [], {pid}
    stats = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    stats.append((int(entry), int(handle.read().rsplit(b")", 1)[1].split()[1])))
            except (OSError, IndexError, ValueError):
                continue
    for child, parent in stats * 3:  # a few passes find grandchildren listed before their parents
        if parent in parents and child not in parents:
            parents.add(child)
            children.append(child)
    return children


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to find the night's processes")
def test_a_night_stopped_by_sigterm_exits_at_once_and_leaves_no_server(tmp_path):
    """SIGTERM in the middle of a night (an operator, systemd, a container stopping): `callqa run`
    exits within seconds with 143, ends the local Prefect server it started (it used to outlive the
    night, listening, 220 MB), and what it finished stays staged for the next night."""
    from tests.conftest import DEMO

    out = tmp_path / "out"
    callqa = Path(sys.executable).with_name("callqa")
    process = subprocess.Popen([str(callqa), "run", str(DEMO / "recordings"), "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        while not list(out.glob("_staging/night-*/rows/.done/batch-*")):  # a call finished and staged
            assert process.poll() is None and time.monotonic() < deadline, "the night ended before a call was staged"
            time.sleep(0.2)
        started = _descendants(process.pid)
        assert started  # the Prefect server, at least
        clock = time.monotonic()
        process.send_signal(15)
        printed, _ = process.communicate(timeout=30)
        assert time.monotonic() - clock < 5 and process.returncode == 143
        assert "stopped by SIGTERM" in printed
        time.sleep(0.5)
        assert not [pid for pid in started if _running(pid)]
        assert list(out.glob("_staging/night-*/rows/.done/batch-*"))  # kept for the next night
    finally:
        if process.poll() is None:
            process.kill()
