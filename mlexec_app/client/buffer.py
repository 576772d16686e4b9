"""The local file a run's requests wait in while the tracking server cannot be reached.

One JSON-lines file per run: a header line (the API root and project), then one line per
request (``{"op": ..., "body": ...}``) in the order they were made. While the file is sent,
``{"done": n}`` lines record how far it got and ``{"run_id": n}`` the run the server created,
so a crash in the middle resends at most one request. A fully sent file is deleted; one the
server refused is renamed ``*.rejected.jsonl`` and kept for a person to read.

Standard library only: the client must import without Django.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUFFIX = ".jsonl"
REJECTED = ".rejected.jsonl"


@dataclass
class Pending:
    """What a buffer file still has to send."""

    path: Path
    api_url: str
    project: str
    run_id: int | None
    ops: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (index, op)


def create(directory: Path, local_id: str, api_url: str, project: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{local_id}{SUFFIX}"
    _append(path, {"api_url": api_url, "project": project})
    return path


def append_op(path: Path, op: dict[str, Any]) -> None:
    _append(path, {"op": op["op"], "body": op.get("body")})


def mark_done(path: Path, index: int) -> None:
    _append(path, {"done": index})


def mark_run(path: Path, run_id: int) -> None:
    _append(path, {"run_id": run_id})


def read(path: Path) -> Pending:
    lines = _records(path.read_text("utf-8"))
    header, records = lines[0], lines[1:]
    pending = Pending(path, header["api_url"], header["project"], None)
    done = -1
    ops: list[tuple[int, dict[str, Any]]] = []
    for record in records:
        if "op" in record:
            ops.append((len(ops), record))
        elif "done" in record:
            done = max(done, int(record["done"]))
        elif "run_id" in record:
            pending.run_id = int(record["run_id"])
    pending.ops = [(i, op) for i, op in ops if i > done]
    return pending


def waiting(directory: Path) -> list[Path]:
    """Buffer files still to send, oldest first."""
    if not directory.is_dir():
        return []
    files = [p for p in directory.glob(f"*{SUFFIX}") if not p.name.endswith(REJECTED)]
    return sorted(files, key=lambda p: p.stat().st_mtime)


def reject(path: Path) -> Path:
    target = path.with_name(path.name[: -len(SUFFIX)] + REJECTED)
    os.replace(path, target)
    return target


def _records(text: str) -> list[dict[str, Any]]:
    raw = [line for line in text.splitlines() if line.strip()]
    records = []
    for n, line in enumerate(raw):
        try:
            records.append(json.loads(line))
        except ValueError:
            if n != len(raw) - 1:
                raise
            # A crash mid-write leaves a partial last line: that request was never sent.
    return records


def _append(path: Path, record: dict[str, Any]) -> None:
    # Flushed and synced per record: a crash leaves at worst a partial last line.
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(record, allow_nan=False) + "\n")
        out.flush()
        os.fsync(out.fileno())
