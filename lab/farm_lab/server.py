"""A real `farm-server serve` (gunicorn) on 127.0.0.1, with its database, a worker token and a
user token, stopped by PID."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from farm_lab.loopback import free_port, kill_group, kill_tree, stop_process, wait_http
from farm_lab.workers import WorkerFactory, WorkerProcess

FARM = str(Path(sys.executable).parent / "farm")
FARM_SERVER = str(Path(sys.executable).parent / "farm-server")


@dataclass
class FarmServer:
    base: Path
    gearman: list[str]
    port: int = field(default_factory=free_port)
    extra: dict[str, Any] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    worker_token: str = ""
    user_token: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def database_url(self) -> str:
        return str(self.extra.get("database_url") or f"sqlite:///{self.base / 'server.db'}")

    @property
    def config(self) -> Path:
        return self.base / "server.yaml"

    @property
    def log(self) -> Path:
        return self.base / "server.log"

    def admin(self, *args: str) -> str:
        """`farm-server ARGS -c server.yaml`: its output."""
        out = subprocess.run([FARM_SERVER, *args, "-c", str(self.config)], check=True,
                             capture_output=True, text=True, env=self._env())
        return out.stdout.strip()

    def _env(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if not k.startswith("FARM_SERVER_")}

    def _configure(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.config.write_text(yaml.safe_dump({
            "database_url": self.database_url,
            "gearman_servers": self.gearman, "callback_url": self.url,
            "listen": f"127.0.0.1:{self.port}", **self.extra}))

    def start(self, timeout_s: float = 30) -> FarmServer:
        self._configure()
        self.admin("init-db")
        self.worker_token = self.admin("add-worker", "testhost", "--allow", "127.0.0.0/8")
        self.user_token = self.admin("add-user", "tester")
        return self.serve(timeout_s)

    def serve(self, timeout_s: float = 30) -> FarmServer:
        """Run `farm-server serve` on the configured database (again, after `stop`)."""
        with self.log.open("ab") as fh:
            # a process group of its own: `kill` reaches a gunicorn worker forked at that
            # moment too
            self.proc = subprocess.Popen([FARM_SERVER, "serve", "-c", str(self.config)],
                                         stdin=subprocess.DEVNULL, stdout=fh,
                                         stderr=subprocess.STDOUT, env=self._env(),
                                         start_new_session=True)
        problem = wait_http(self.url + "v1/openapi.json", self.proc, timeout_s, poll_s=0.1)
        if problem:
            self.stop()
            raise RuntimeError(f"farm-server serve {problem}: {self.log.read_text()[-2000:]}")
        return self

    def join(self, first: FarmServer, timeout_s: float = 30) -> FarmServer:
        """Serve the database `first` serves (set `database_url` in both extras), with its
        tokens: a second status server of the same farm."""
        self._configure()
        self.worker_token, self.user_token = first.worker_token, first.user_token
        return self.serve(timeout_s)

    def kill(self) -> None:
        """kill -9 of every process of this server (gunicorn's master and workers, the
        monitor), as a crash of its host would."""
        if self.proc is None:
            return
        kill_tree(self.proc.pid)  # all at once; then the group, until none of it runs
        self.proc.wait()
        kill_group(self.proc.pid)
        self.proc = None

    def queue_test(self, test_id: str) -> None:
        """A test queued for Tempest 47.0.0 whether or not a worker serves it (for benches
        that need one to report on or to ask about)."""
        r = self.api("POST", "/v1/tests", json={
            "test_id": test_id, "tempest": {"version": "47.0.0"}, "queue_anyway": True,
            "conf": {"a": {"b": 1}}, "tests": {"regex": "x"}})
        assert r.status_code == 201, r.text

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_process(self.proc)
        self.proc = None

    # ---- the API, as a user ------------------------------------------------------------------
    def api(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.user_token}"}
        return requests.request(method, self.url + path.lstrip("/"), headers=headers,
                                timeout=30, **kwargs)

    def wait_state(self, test_id: str, states: set[str], timeout_s: float = 600) -> Any:
        end = time.monotonic() + timeout_s
        doc: Any = None
        while time.monotonic() < end:
            doc = self.api("GET", f"/v1/tests/{test_id}").json()
            if doc["test"]["state"] in states:
                return doc
            time.sleep(0.3)
        raise AssertionError(f"{test_id} never reached {states}: {doc}")


def server_worker(workers: WorkerFactory, server: FarmServer, name: str,
                  **extra: Any) -> WorkerProcess:
    """A worker that reports to `server` with its worker token."""
    return workers.start(name, callbacks=[{"url": server.url, "token": server.worker_token}],
                         **extra)
