"""A real Prometheus (Debian's) on 127.0.0.1 for the tests: it scrapes the given targets
every second; queried through its HTTP API; stopped by PID."""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from farm_lab.loopback import free_port, stop_process, wait_http

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


@dataclass
class Prometheus:
    base: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self, jobs: list[dict[str, Any]], rules: list[Path] | None = None) -> Prometheus:
        """`jobs`: Prometheus scrape_configs entries (scraped every second)."""
        self.base.mkdir(parents=True, exist_ok=True)
        config = self.base / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(r) for r in rules or []],
            "scrape_configs": jobs}))
        with (self.base / "prometheus.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [PROMETHEUS, f"--config.file={config}",
                 f"--storage.tsdb.path={self.base / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        problem = wait_http(self.url + "-/ready", self.proc, 60, poll_s=0.2)
        if problem:
            self.stop()
            raise RuntimeError(f"prometheus {problem}: "
                               f"{(self.base / 'prometheus.log').read_text()[-2000:]}")
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_process(self.proc)
        self.proc = None

    def query(self, expr: str) -> list[dict[str, Any]]:
        r = requests.get(self.url + "api/v1/query", params={"query": expr}, timeout=10)
        r.raise_for_status()
        result: list[dict[str, Any]] = r.json()["data"]["result"]
        return result

    def value(self, expr: str) -> float | None:
        """The single value of `expr` now, None when it has none."""
        found = self.query(expr)
        return float(found[0]["value"][1]) if found else None

    def wait_value(self, expr: str, want: float, timeout_s: float = 120) -> None:
        """Wait until `expr` has the value `want` (scrapes come every second)."""
        end = time.monotonic() + timeout_s
        seen = None
        while time.monotonic() < end:
            seen = self.value(expr)
            if seen == want:
                return
            time.sleep(0.5)
        raise AssertionError(f"{expr} = {seen}, never {want} in {timeout_s:g} s")

    def targets_up(self) -> dict[str, str]:
        r = requests.get(self.url + "api/v1/targets", timeout=10)
        return {t["labels"]["job"]: t["health"] for t in r.json()["data"]["activeTargets"]}
