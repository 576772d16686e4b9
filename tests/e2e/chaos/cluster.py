"""Two daphne workers on a throwaway PostgreSQL and Redis, behind a balancing proxy."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import httpx

from sessions_app.tcp_proxy import TcpProxy
from tests.e2e.chaos.engines import PostgresServer, RedisServer
from tests.e2e.servers import DaphneProcess, manage_output, run_manage

SETUP = """
from django.contrib.auth import get_user_model
from sessions_app.access import mint_token
from sessions_app.keys import create_key
from sessions_app.models import Session
user, _ = get_user_model().objects.get_or_create(username="agent")
for name in {sessions!r}:
    Session.objects.get_or_create(name=name, defaults={{"owner": user}})
print(mint_token(user))
print(create_key(user, "chaos agent", all_sessions=True)[1])
"""


@dataclass
class Cluster:
    workers_count: int = 2
    pg: PostgresServer = field(default_factory=PostgresServer)
    redis: RedisServer = field(default_factory=RedisServer)
    workers: list[DaphneProcess] = field(default_factory=list)
    proxy: TcpProxy | None = None
    token: str = ""
    key: str = ""

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.e2e.chaos.settings",
            "DATABASE_URL": self.pg.url,
            "REDIS_URL": self.redis.url,
            "CHANNEL_LAYER_PREFIX": f"chaos{os.getpid()}",
            "LOG_LEVEL": "WARNING",
            # As in production: with DEBUG on, Django keeps every SQL statement (payloads
            # included) of the log's long-lived connections, which looks like a leak.
            "DEBUG": "0",
            "SECRET_KEY": "chaos-tests-only-" + "k" * 40,
        }

    @property
    def url(self) -> str:
        assert self.proxy is not None
        return self.proxy.url

    def start(self, sessions: list[str]) -> Cluster:
        self.pg.init()
        self.redis.start()
        run_manage("migrate", "--no-input", env=self.env)
        out = manage_output("shell", "-c", SETUP.format(sessions=sessions), env=self.env)
        self.token, self.key = out.strip().splitlines()[-2:]
        self.workers = [DaphneProcess(self.env) for _ in range(self.workers_count)]
        for worker in self.workers:
            worker.start()
        self.proxy = TcpProxy([w.port for w in self.workers]).start()
        return self

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        for worker in self.workers:
            worker.stop(kill=True)
            worker.log.unlink(missing_ok=True)
        self.redis.stop()
        self.pg.destroy()

    def kill_and_restart(self, index: int, down: float = 0.0) -> float:
        """SIGKILL worker ``index``, start it again; return the seconds it was down."""
        worker = self.workers[index]
        began = time.monotonic()
        worker.stop(kill=True)
        time.sleep(down)
        worker.start()
        return time.monotonic() - began

    def history(self, session: str) -> list[dict]:
        """Every entry of ``session``, read over REST through the proxy."""
        events: list[dict] = []
        after = "-1"
        headers = {"Authorization": f"Bearer {self.key}"}
        for _ in range(10_000):
            page = httpx.get(f"{self.url}/api/sessions/{session}/events",
                             params={"after": after, "limit": 1000}, headers=headers,
                             timeout=30).json()  # fmt: skip
            events += page["events"]
            after = page["next_offset"]
            if page["up_to_date"]:
                return events
        raise AssertionError("history did not end")
