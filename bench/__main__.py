"""Run the benchmarks: ``python -m bench`` (all of them) or ``python -m bench NAME [options]``.

Options after the name go to that benchmark (e.g. ``python -m bench sessions_log --quick``).
To add a benchmark, add one line to ``BENCHMARKS``: its name and the module whose ``main()``
runs it (``main`` reads its options from ``sys.argv[1:]``).
"""

from __future__ import annotations

import importlib
import os
import secrets
import sys

# The servers the benchmarks start run the demo site's settings, which refuse to start without
# a SECRET_KEY outside DEBUG (as a deployment must); a benchmark's sites get one of their own.
os.environ.setdefault("SECRET_KEY", "bench-" + secrets.token_urlsafe(50))

BENCHMARKS: dict[str, str] = {
    "sessions_log": "bench.sessions_log",
    "chaos": "bench.chaos",
    "compaction": "bench.compaction",
    "export": "bench.export",
    "control": "bench.control",
    "agents": "bench.agents",
    "durable_streams": "bench.durable_streams",
    "mlexec_label_issues": "bench.mlexec_label_issues",
    "learning_curves": "bench.learning_curves",
    "capacity": "bench.capacity",
    "idle_sockets": "bench.idle_sockets",
}


def run(name: str, args: list[str]) -> None:
    module = importlib.import_module(BENCHMARKS[name])
    saved = sys.argv
    sys.argv = [f"python -m bench {name}", *args]
    try:
        module.main()
    finally:
        sys.argv = saved


def main() -> None:
    args = sys.argv[1:]
    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        print("benchmarks:", ", ".join(BENCHMARKS))
        return
    if args and not args[0].startswith("-"):
        name, rest = args[0], args[1:]
        if name not in BENCHMARKS:
            sys.exit(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
        run(name, rest)
        return
    for name in BENCHMARKS:  # options given without a name go to every benchmark
        print(f"== {name}", flush=True)
        run(name, args)


if __name__ == "__main__":
    main()
