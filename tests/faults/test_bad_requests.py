"""Generated requests (schemathesis, from the served OpenAPI document) to a real `farm-server serve`
from unknown hosts - a made-up token and none: 0 server errors, every RefStack endpoint
answers 405, no API call succeeds, and nothing is stored. (The same with real tokens, and
413 for oversize bodies: tests/server/test_schemathesis.py, test_refstack_api.py.)"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from farm_lab.gearmand import running as running_gearmand
from farm_lab.server import FarmServer

pytestmark = [pytest.mark.gearman, pytest.mark.slow]
ST = str(Path(sys.executable).parent / "st")
REFSTACK = ("/update-test-status/", "/post-result", "/get-miniconf", "/get-testcases")
PUBLIC = ("/v1/openapi.json",)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FarmServer]:
    with running_gearmand(tmp_path / "gearmand", queue="builtin") as gearmand:
        s = FarmServer(tmp_path / "server", [gearmand.address]).start()
        try:
            yield s
        finally:
            s.stop()


def generated(server: FarmServer, out: Path, *headers: str) -> list[tuple[str, str, int]]:
    """(method, path, status) of every request schemathesis made."""
    har = out / "run.har"
    proc = subprocess.run(
        [ST, "run", server.url + "v1/openapi.json", "--checks", "not_a_server_error",
         "--max-examples", "30", "--seed", "20261126", "--workers", "1",
         "--report", "har", "--report-har-path", str(har), "--warnings", "off", *headers],
        capture_output=True, text=True, timeout=900, cwd=out)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    entries = json.loads(har.read_text())["log"]["entries"]
    return [(e["request"]["method"], urlsplit(e["request"]["url"]).path,
             e["response"]["status"]) for e in entries]


def stored(server: FarmServer) -> dict[str, int]:
    with sqlite3.connect(server.base / "server.db") as db:
        return {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608
                for t in ("tests", "reports", "results", "result_files", "uploads")}


@pytest.mark.parametrize("token", ["made-up-token-0000000000000000000000", None])
def test_unknown_hosts_get_405_and_nothing_is_stored(server: FarmServer, tmp_path: Path,
                                                     token: str | None) -> None:
    before = stored(server)
    headers = ("-H", f"Authorization: Bearer {token}") if token else ()
    calls = generated(server, tmp_path, *headers)
    refstack = [c for c in calls if c[1].rstrip("/") in {p.rstrip("/") for p in REFSTACK}]
    assert len(refstack) >= 30, len(refstack)
    assert {status for _, _, status in refstack} == {405}, \
        sorted({c for c in refstack if c[2] != 405})[:20]
    api = [c for c in calls if c[1].startswith("/v1/") and c[1] not in PUBLIC]
    assert api and not [c for c in api if c[2] < 300], [c for c in api if c[2] < 300][:20]
    assert all(status < 500 for _, _, status in calls)
    assert stored(server) == before == {"tests": 0, "reports": 0, "results": 0,
                                        "result_files": 0, "uploads": 0}
    assert "Traceback" not in server.log.read_text()
    print(f"unknown host ({'made-up token' if token else 'no token'}): {len(calls)} requests, "
          f"{len(refstack)} to RefStack endpoints (all 405), {len(api)} to /v1 (none 2xx), "
          "0 server errors, 0 rows stored")
