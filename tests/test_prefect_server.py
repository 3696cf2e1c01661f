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
