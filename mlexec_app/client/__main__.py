"""``python -m mlexec_app.client sync``: send the runs buffered while the server was away."""

from __future__ import annotations

import argparse
import sys

from mlexec_app.client.tracker import Tracker, TrackingError, default_buffer_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlexec_app.client")
    sub = parser.add_subparsers(dest="command", required=True)
    sync = sub.add_parser("sync", help="send buffered runs (MLEXEC_URL, MLEXEC_API_KEY)")
    sync.add_argument("--url", help="API root, e.g. http://127.0.0.1:8000/api/mlexec")
    sync.add_argument("--buffer-dir", default=None, help=f"default: {default_buffer_dir()}")
    args = parser.parse_args(argv)
    try:
        with Tracker(args.url, buffer_dir=args.buffer_dir, retries=1) as tracker:
            sent = tracker.sync()
    except TrackingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{sent} buffered run(s) sent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
