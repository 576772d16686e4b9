"""A round-robin TCP proxy for trying several ASGI workers on one machine (not for production:
use nginx, HAProxy or your cloud's load balancer; see deploy/nginx.conf).

    python deploy/tcp_proxy.py --listen 127.0.0.1:8000 127.0.0.1:8001 127.0.0.1:8002 127.0.0.1:8003

Each new connection (HTTP or WebSocket) goes to the next worker, skipping one that is down; no
stickiness is needed, because every worker reads the same log. The proxy itself is
``sessions_app.tcp_proxy`` (also ``python -m sessions_app.tcp_proxy``); this script runs it
from a checkout.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sessions_app.tcp_proxy import main  # noqa: E402  (needs the checkout on sys.path)

if __name__ == "__main__":
    main()
