"""What a job started by an API caller may load and build: registered names and data-root files.

A caller names a dataset the site owner registered (``JOB_DATASETS``), or a ``.csv``/``.npz``
file by its path relative to the project's data folder; a model factory only by a name the
site owner registered (``JOB_MODEL_FACTORIES``). Never a dotted path or a server path: those
would let any caller import and call any function, or read any file the worker can read.

Pure functions: the caller passes the settings in. A refused name and a missing file get the
same :class:`NotAllowed` message, so a refusal tells nothing about the server's disk.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath

from mlexec_app.diagnostics.exceptions import DiagnosticsError

FILE_SUFFIXES = (".csv", ".npz")
# A dataset name longer than this is refused before any lookup (the job row keeps 500).
MAX_NAME = 500


class NotAllowed(DiagnosticsError, ValueError):
    """A name the caller may not use, or a file that is not in the project's data folder."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


def resolve_dataset(name: str, *, registered: Mapping[str, str], data_root: Path | None) -> str:
    """What the worker loads for ``name``: the spec of a registered dataset, or the absolute
    path of a file inside ``data_root`` (None: no files at all).

    Raises :class:`NotAllowed` (code ``dataset_not_allowed``) for anything else.
    """
    if name in registered:
        return registered[name]
    if data_root is not None and Path(name).suffix.lower() in FILE_SUFFIXES:
        found = resolve_data_file(name, data_root)
        if found is not None:
            return str(found)
    names = ", ".join(sorted(registered)) or "none"
    files = " or a .csv/.npz file in the project's data folder" if data_root is not None else ""
    raise NotAllowed(
        f"Unknown dataset {_short(name)}: name a registered dataset ({names}){files}.",
        code="dataset_not_allowed",
    )


def resolve_data_file(relative: str, root: Path) -> Path | None:
    """The regular file ``relative`` names inside ``root``, symlinks resolved, or None.

    None for an absolute path, a ``..`` part, a backslash or a drive, a NUL, a missing file,
    and a path (or symlink) that leads outside ``root``: one answer for all of them.
    """
    if not relative or len(relative) > MAX_NAME or "\x00" in relative or "\\" in relative:
        return None
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts or PureWindowsPath(relative).drive:
        return None
    try:
        base = root.resolve(strict=True)
        target = (base / pure).resolve(strict=True)
        if target.is_relative_to(base) and target.is_file():
            return target
    except (OSError, RuntimeError, ValueError):  # missing, a symlink loop, a name too long
        return None
    return None


def resolve_factory(name: str, *, registered: Mapping[str, str]) -> str:
    """The dotted path of the registered model factory ``name``; NotAllowed otherwise."""
    if isinstance(name, str) and name in registered:
        return registered[name]
    names = ", ".join(sorted(registered)) or "none registered"
    raise NotAllowed(
        f"Unknown model factory {_short(str(name))}; registered factories: {names}.",
        code="factory_not_allowed",
    )


def _short(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")
