"""Log runs to mlexec_app from a training script: the tracker and its runs.

Errors::

    TrackingError
    ├── TrackingRejected   the server answered 4xx: the request is wrong (raised to the caller)
    └── Unreachable        no answer, or 5xx/429 after the retries (never raised: buffered)

Requests that cannot reach the server wait in a local file (:mod:`.buffer`) and are sent, in
order, on a later flush of the same run or by :meth:`Tracker.sync` (``python -m
mlexec_app.client sync``), so a training run never stops because the tracker did. Only httpx
and the standard library: this imports without Django.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

import mlexec_app.client.buffer as buffer

log = logging.getLogger("mlexec_app.client")

SPLITS = ("train", "train_dev", "dev", "test")
MAX_BATCH = 1000  # the server's default MAX_BATCH
INT_MAX = 2**31 - 1


class TrackingError(Exception):
    """Base class of the client's errors."""


class TrackingRejected(TrackingError):
    """The server refused a request (4xx); ``code`` is the API's error code."""

    def __init__(self, status: int, code: str, message: str, detail: Any = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.detail = status, code, message, detail

    @classmethod
    def from_response(cls, response: httpx.Response) -> TrackingRejected:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return cls(response.status_code, "http_error", response.reason_phrase)
        return cls(
            response.status_code,
            str(body.get("code", "http_error")),
            str(body.get("message", response.reason_phrase)),
            body.get("detail"),
        )


class Unreachable(TrackingError):
    """No usable answer after the retries; the request goes to the buffer."""


def default_buffer_dir() -> Path:
    if os.environ.get("MLEXEC_BUFFER_DIR"):
        return Path(os.environ["MLEXEC_BUFFER_DIR"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser()
    return cache / "mlexec" / "buffer"


class Tracker:
    """A connection to one mlexec API (``url`` is its root, e.g. ``.../api/mlexec``).

    ``url`` and ``api_key`` default to ``MLEXEC_URL`` and ``MLEXEC_API_KEY``; ``buffer_dir``
    to ``MLEXEC_BUFFER_DIR`` or ``~/.cache/mlexec/buffer``. A run sends its metric points
    every ``batch_size`` points or ``flush_interval`` seconds. A failed request is tried
    ``retries`` more times (waiting ``backoff``, then twice as long...); after that the run
    buffers and tries the server again ``offline_retry`` seconds later.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        buffer_dir: str | Path | None = None,
        batch_size: int = 100,
        flush_interval: float = 5.0,
        retries: int = 2,
        backoff: float = 0.25,
        offline_retry: float = 30.0,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        url = url or os.environ.get("MLEXEC_URL")
        api_key = api_key or os.environ.get("MLEXEC_API_KEY")
        if not url or not api_key:
            raise TrackingError("Give url and api_key, or set MLEXEC_URL and MLEXEC_API_KEY.")
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}.")
        self.url = url.rstrip("/")
        self.buffer_dir = Path(buffer_dir).expanduser() if buffer_dir else default_buffer_dir()
        self.batch_size, self.flush_interval = batch_size, flush_interval
        self.retries, self.backoff, self.offline_retry = retries, backoff, offline_retry
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=timeout,
            transport=transport,
        )
        self._live: set[Path] = set()  # buffer files of this process's open runs

    def start_run(
        self,
        project: str | int,
        name: str,
        *,
        params: Mapping[str, Any] | None = None,
        notes: str = "",
    ) -> Run:
        """Start a run in ``project`` (its slug or id); use it as a context manager."""
        return Run(self, str(project), name, params or {}, notes)

    def sync(self) -> int:
        """Send every buffered run of this API that no open run of this process holds.

        Returns how many runs were sent completely. Raises :class:`TrackingRejected` (after
        renaming the file ``*.rejected.jsonl``) if the server refuses one.
        """
        sent = 0
        for path in buffer.waiting(self.buffer_dir):
            if path in self._live:
                continue
            pending = buffer.read(path)
            if pending.api_url != self.url:
                continue
            try:
                self.replay(pending)
            except Unreachable:
                break
            sent += 1
        return sent

    def replay(self, pending: buffer.Pending) -> int | None:
        """Send a buffer file's requests in order, recording progress; delete it when done."""
        run_id = pending.run_id
        for index, op in pending.ops:
            try:
                result = self.send(op, pending.project, run_id)
            except TrackingRejected:
                buffer.reject(pending.path)
                self._live.discard(pending.path)
                raise
            if op["op"] == "create":
                run_id = result
                buffer.mark_run(pending.path, result)
            buffer.mark_done(pending.path, index)
        pending.path.unlink()
        self._live.discard(pending.path)
        return run_id

    def send(self, op: Mapping[str, Any], project: str, run_id: int | None) -> int:
        """Send one request; returns the run's id."""
        kind, body = op["op"], op.get("body")
        if kind == "create":
            answer = self.request("POST", f"/projects/{quote(project, safe='')}/runs", body)
            return int(answer["id"])
        if run_id is None:
            raise TrackingError("A run's first request must create it.")
        if kind == "batch":
            self.request("POST", f"/runs/{run_id}/log-batch", body)
        elif kind == "patch":
            self.request("PATCH", f"/runs/{run_id}", body)
        else:
            raise TrackingError(f"Unknown buffered request {kind!r}.")
        return run_id

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """One API call with retries; raises :class:`Unreachable` or :class:`TrackingRejected`."""
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = self._http.request(method, path, json=body)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code < 400:
                return response.json()
            if response.status_code == 429 or response.status_code >= 500:
                problem = f"HTTP {response.status_code}"
                continue
            raise TrackingRejected.from_response(response)
        raise Unreachable(f"{method} {self.url}{path}: {problem}")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Run:
    """A run being logged. ``id`` is the server's id, ``None`` until the server has it."""

    def __init__(
        self, tracker: Tracker, project: str, name: str, params: Mapping[str, Any], notes: str
    ) -> None:
        self.tracker, self.project, self.name = tracker, project, name
        self.local_id = uuid.uuid4().hex
        self.id: int | None = None
        self.status = "running"
        self.buffer_path: Path | None = None
        self._points: list[dict[str, Any]] = []
        self._params: dict[str, Any] = {}
        self._artifacts: list[dict[str, str]] = []
        self._last_flush = time.monotonic()
        self._retry_at = 0.0
        body = {"name": name, "status": "running", "params": clean_params(params), "notes": notes}
        self._submit({"op": "create", "body": body})

    @property
    def buffered(self) -> bool:
        """Whether some of this run's requests still wait in the local buffer."""
        return self.buffer_path is not None

    def log(self, metrics: Mapping[str, Any], step: int = 0) -> None:
        """Log metric values at ``step``; ``train``/``train_dev``/``dev``/``test`` are fractions.

        A NaN or infinite value is skipped with a warning (a diverging loss must not stop
        the run); a split value outside [0, 1] or a bad key or step raises ``ValueError``.
        """
        _check_step(step)
        for key, value in metrics.items():
            number = _number(key, value)
            if number is not None:
                self._points.append({"key": key, "value": number, "step": step})
        if (
            len(self._points) >= self.tracker.batch_size
            or time.monotonic() - self._last_flush >= self.tracker.flush_interval
        ):
            self.flush()

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Add parameters (sent with the next batch); a logged parameter keeps its value."""
        self._params.update(clean_params(params))

    def log_artifact(self, name: str, uri: str) -> None:
        """Record where an artifact is (a URI: the file itself is not uploaded)."""
        if not name or not uri:
            raise ValueError("An artifact needs a name and a URI.")
        self._artifacts.append({"name": str(name), "uri": str(uri)})
        self._submit({"op": "patch", "body": {"artifacts": list(self._artifacts)}})

    def flush(self) -> None:
        """Send what is waiting (or buffer it); try the buffer again when it is time."""
        self._last_flush = time.monotonic()
        points, self._points = self._points, []
        params, self._params = self._params, {}
        for start in range(0, max(len(points), 1), MAX_BATCH):
            chunk = points[start : start + MAX_BATCH]
            if chunk or params:
                self._submit({"op": "batch", "body": {"params": params, "metrics": chunk}})
                params = {}
        if self.buffered and time.monotonic() >= self._retry_at:
            self._drain()

    def finish(self) -> None:
        self._end("finished", None)

    def fail(self, notes: str = "") -> None:
        self._end("failed", notes or None)

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.finish()
            return
        try:
            self.fail(f"{exc_type.__name__ if exc_type else 'Error'}: {exc}"[:2000])
        except TrackingError:
            # The training's own exception is the one to see; this one is only logged.
            log.exception("Could not mark run %s failed", self.name)

    def _end(self, status: str, notes: str | None) -> None:
        if self.status != "running":
            return
        self.flush()
        body: dict[str, Any] = {"status": status}
        if notes is not None:
            body["notes"] = notes
        self._submit({"op": "patch", "body": body})
        self.status = status
        if self.buffered:
            self._drain()
        if self.buffered:
            log.warning(
                "Run %r is kept in %s; send it later with `python -m mlexec_app.client sync`.",
                self.name,
                self.buffer_path,
            )
            self.tracker._live.discard(self.buffer_path)  # sync() may take it from now on

    def _submit(self, op: dict[str, Any]) -> None:
        if self.buffer_path is not None:
            buffer.append_op(self.buffer_path, op)
            return
        try:
            self.id = self.tracker.send(op, self.project, self.id)
        except Unreachable as exc:
            self._start_buffering(op, exc)

    def _start_buffering(self, op: dict[str, Any], exc: Unreachable) -> None:
        log.warning("Tracking server unreachable (%s); buffering run %r.", exc, self.name)
        path = buffer.create(self.tracker.buffer_dir, self.local_id, self.tracker.url, self.project)
        if self.id is not None:
            buffer.mark_run(path, self.id)
        buffer.append_op(path, op)
        self.buffer_path = path
        self.tracker._live.add(path)
        self._retry_at = time.monotonic() + self.tracker.offline_retry

    def _drain(self) -> None:
        assert self.buffer_path is not None
        try:
            self.id = self.tracker.replay(buffer.read(self.buffer_path))
        except Unreachable:
            self._retry_at = time.monotonic() + self.tracker.offline_retry
            return
        log.info("Run %r: buffered requests sent.", self.name)
        self.buffer_path = None


def _check_step(step: Any) -> None:
    if isinstance(step, bool) or not isinstance(step, int) or abs(step) > INT_MAX:
        raise ValueError(f"step must be an integer within 32 bits; got {step!r}.")


def _number(key: Any, value: Any) -> float | None:
    if not isinstance(key, str) or not 1 <= len(key) <= 100:
        raise ValueError(f"Metric keys are strings of 1 to 100 characters; got {key!r}.")
    if hasattr(value, "item"):  # numpy and torch scalars
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"Metric {key!r} must be a number; got {type(value).__name__}.")
    if not math.isfinite(value):
        log.warning("Metric %r is %s at this step; not logged.", key, value)
        return None
    if key in SPLITS and not 0 <= value <= 1:
        raise ValueError(f"{key} is the project's metric as a fraction in [0, 1]; got {value}.")
    return float(value)


def clean_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters as JSON the server takes: odd objects become text, NaN becomes "nan"."""
    return json.loads(json.dumps(_plain(dict(params)), default=str, allow_nan=False))


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            value = value.item()
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
