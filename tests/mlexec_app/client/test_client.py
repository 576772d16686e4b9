"""The tracking client against a real server (pytest-django's live server), outages included."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from mlexec_app import keys, services
from mlexec_app.client import Tracker, TrackingRejected
from mlexec_app.models import Run
from sessions_app.tcp_proxy import TcpProxy
from tests.e2e.servers import free_port

# Its subject does not touch the engines: the first test pass runs it, the second does not.
pytestmark = pytest.mark.engine_independent

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def owner(transactional_db):
    return get_user_model().objects.create_user("trainer", password="pw")


@pytest.fixture
def api_key(owner):
    return keys.create_api_key(owner, "client", all_projects=True)[1]


@pytest.fixture
def project(owner):
    return services.create_project(
        owner, name="Digits", metric_name="accuracy", metric_direction="higher"
    )


@pytest.fixture
def api_url(live_server):
    return live_server.url + "/api/mlexec"


def tracker(url, key, tmp_path, **options):
    # A request may take a while on a starved machine (the live server is a thread of this
    # process): 60 s, not the client's 10, before a slow answer counts as an outage.
    options = {"retries": 0, "backoff": 0.01, "offline_retry": 0.0, "timeout": 60.0, **options}
    return Tracker(url, key, buffer_dir=tmp_path / "buffer", **options)


def listening_again(proxy, seconds=30.0):
    deadline = time.monotonic() + seconds
    while not proxy.listening:
        assert time.monotonic() < deadline, "the proxy never listened again"
        time.sleep(0.01)


def test_a_run_is_logged_in_batches_and_finished(api_url, api_key, project, tmp_path):
    with tracker(api_url, api_key, tmp_path, batch_size=4) as t:
        with t.start_run("digits", "mlp", params={"lr": 0.01, "layers": (64, 32)}) as run:
            for step in range(1, 6):
                run.log(
                    {"loss": 1 / step, "train": 0.8 + step / 100, "dev": 0.7 + step / 100},
                    step=step,
                )
            run.log_params({"epochs": 5})
            run.log_artifact("weights", "file:///tmp/mlp.pt")
            assert run.id is not None
    saved = Run.objects.get(pk=run.id)
    assert saved.status == "finished" and saved.finished_at is not None
    assert saved.params == {"lr": 0.01, "layers": [64, 32], "epochs": 5}
    assert saved.train == pytest.approx(0.85) and saved.dev == pytest.approx(0.75)
    assert [p.value for p in services.metric_history(saved, "loss")] == pytest.approx(
        [1, 1 / 2, 1 / 3, 1 / 4, 1 / 5]
    )
    assert saved.artifacts == [{"name": "weights", "uri": "file:///tmp/mlp.pt"}]
    assert not list((tmp_path / "buffer").glob("*"))


def test_an_exception_marks_the_run_failed_and_still_propagates(
    api_url, api_key, project, tmp_path
):
    t = tracker(api_url, api_key, tmp_path)
    with pytest.raises(ZeroDivisionError):
        with t.start_run(project.pk, "diverges") as run:
            run.log({"loss": float("nan"), "train": 0.5}, step=1)  # NaN skipped, not fatal
            1 / 0  # noqa: B018
    saved = Run.objects.get(pk=run.id)
    assert saved.status == "failed"
    assert "ZeroDivisionError" in saved.notes
    assert saved.train == 0.5 and "loss" not in saved.metrics


def test_what_the_server_refuses_reaches_the_caller(api_url, api_key, project, tmp_path):
    t = tracker(api_url, api_key, tmp_path)
    with pytest.raises(TrackingRejected) as refused:
        t.start_run("no-such-project", "x")
    assert refused.value.status == 404 and refused.value.code == "not_found"
    with pytest.raises(TrackingRejected) as bad_key:
        tracker(api_url, "mlx_wrong", tmp_path).start_run("digits", "x")
    # An unknown key falls through to the session check, which answers 403 (CSRF) here.
    assert bad_key.value.status in (401, 403)
    run = t.start_run("digits", "x")
    with pytest.raises(ValueError, match="fraction"):
        run.log({"dev": 1.7})
    assert not list((tmp_path / "buffer").glob("*"))


def test_a_run_started_while_the_server_is_down_is_sent_later(
    api_url, api_key, project, tmp_path, live_server
):
    proxy = TcpProxy(int(live_server.url.rsplit(":", 1)[1])).start()
    url = proxy.url + "/api/mlexec"
    try:
        proxy.cut(600)  # down until resumed, however slowly this process gets there
        started = time.monotonic()
        with tracker(url, api_key, tmp_path, batch_size=2) as t:
            with t.start_run("digits", "offline", params={"lr": 0.1}) as run:
                for step in range(5):
                    run.log({"train": 0.5, "dev": 0.4 + step / 100}, step=step)
        assert time.monotonic() - started < 30  # the training was not held up until the end
        assert run.buffered and run.id is None
        assert Run.objects.count() == 0
        waiting = list((tmp_path / "buffer").glob("*.jsonl"))
        assert len(waiting) == 1
        assert api_key not in waiting[0].read_text()  # no credential on disk
        proxy.resume()
        listening_again(proxy)
        with tracker(url, api_key, tmp_path) as later:
            assert later.sync() == 1
            assert later.sync() == 0  # a second sync sends nothing twice
    finally:
        proxy.stop()
    saved = Run.objects.get()
    assert saved.name == "offline" and saved.status == "finished"
    assert saved.params == {"lr": 0.1} and saved.dev == pytest.approx(0.44)
    assert services.metric_history(saved, "dev").count() == 5
    assert not list((tmp_path / "buffer").glob("*"))


def test_an_outage_in_the_middle_of_a_run_loses_nothing(
    api_url, api_key, project, tmp_path, live_server
):
    proxy = TcpProxy(int(live_server.url.rsplit(":", 1)[1])).start()
    try:
        t = tracker(proxy.url + "/api/mlexec", api_key, tmp_path, batch_size=1)
        with t.start_run("digits", "flaky") as run:
            run.log({"dev": 0.1}, step=0)
            proxy.cut(600)  # down until resumed
            run.log({"dev": 0.2}, step=1)  # buffered
            assert run.buffered
            proxy.resume()
            listening_again(proxy)
            run.log({"dev": 0.3}, step=2)  # the server is back: the buffer goes first
            assert not run.buffered
    finally:
        proxy.stop()
    saved = Run.objects.get(pk=run.id)
    assert saved.status == "finished"
    assert [(p.step, p.value) for p in services.metric_history(saved, "dev")] == [
        (0, 0.1),
        (1, 0.2),
        (2, 0.3),
    ]


def test_a_buffer_the_server_refuses_is_kept_aside(api_url, api_key, project, tmp_path):
    down = f"http://127.0.0.1:{free_port()}/api/mlexec"
    with tracker(down, api_key, tmp_path) as t, t.start_run("gone", "x") as run:
        run.log({"dev": 0.5})
    path = run.buffer_path
    header, *rest = path.read_text().splitlines()
    path.write_text("\n".join([json.dumps({**json.loads(header), "api_url": api_url}), *rest]))
    with pytest.raises(TrackingRejected):
        tracker(api_url, api_key, tmp_path).sync()
    assert [p.name.endswith(".rejected.jsonl") for p in (tmp_path / "buffer").iterdir()] == [True]


def test_the_sync_command_sends_buffered_runs(api_url, api_key, project, tmp_path):
    # The documented way: MLEXEC_URL, MLEXEC_API_KEY, MLEXEC_BUFFER_DIR.
    down = f"http://127.0.0.1:{free_port()}/api/mlexec"
    with tracker(down, api_key, tmp_path) as t, t.start_run("digits", "later") as run:
        run.log({"dev": 0.5})
    path = run.buffer_path
    header, *rest = path.read_text().splitlines()
    path.write_text("\n".join([json.dumps({**json.loads(header), "api_url": api_url}), *rest]))
    env = {
        "MLEXEC_URL": api_url,
        "MLEXEC_API_KEY": api_key,
        "MLEXEC_BUFFER_DIR": str(tmp_path / "buffer"),
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run(
        [sys.executable, "-m", "mlexec_app.client", "sync"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "1 buffered run(s) sent" in out.stdout
    assert Run.objects.get().status == "finished"


def test_the_client_imports_without_django():
    code = "import sys, mlexec_app.client; assert 'django' not in sys.modules, 'django imported'"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
