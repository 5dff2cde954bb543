"""`farm-worker outbox list|flush|drop`, run as an operator runs it, against a real HTTP
server on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from farm_lab.loopback import free_port
from farm_worker.outbox import Outbox
from harness.recorder import Recorder

FARM_WORKER = str(Path(sys.executable).parent / "farm-worker")


def outbox(config: Path, *args: str) -> tuple[int, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_WORKER_")}
    out = subprocess.run([FARM_WORKER, "outbox", *args, "--json", "-c", str(config)],
                         capture_output=True, text=True, env=env, timeout=120)
    return out.returncode, json.loads(out.stdout) if out.stdout.strip() else out.stderr


def test_list_flush_and_drop(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    config = tmp_path / "worker.yaml"
    config.write_text(yaml.safe_dump({
        "outbox_dir": str(tmp_path / "outbox"), "report_backoff_max_s": 0.5,
        "callbacks": [{"url": url, "token": "cfg-tok"}]}))
    sub = tmp_path / "r.subunit"
    sub.write_bytes(b"\xb3r")
    for worker in ("h-0", "h-1"):  # a host's two slots, the server away
        box = Outbox(tmp_path / "outbox" / worker)
        for tid in ("keep-1", "gone-1"):
            box.add_status(tid, url, {"test_id": tid, "status": "passed", "worker": worker})
        box.add_upload("keep-1", url, sub, worker, None)
    code, listed = outbox(config, "list")
    assert code == 0 and len(listed["entries"]) == 6
    first = listed["entries"][0]
    assert (first["worker"], first["kind"], first["state"]) == ("h-0", "status", "passed")
    code, dropped = outbox(config, "drop", "gone-1")
    assert code == 0 and dropped["dropped"] == {"h-0": 1, "h-1": 1}
    # nothing answers: flush gives up after its timeout and says what is left (exit 1)
    code, flushed = outbox(config, "flush", "--timeout", "1")
    assert code == 1 and flushed["h-0"]["left"] == 2
    rec = Recorder(token="cfg-tok").start(port)
    try:
        code, flushed = outbox(config, "flush", "--timeout", "60")
        assert code == 0, flushed
        assert flushed == {w: {"owed": 2, "left": 0, "set_aside": 0} for w in ("h-0", "h-1")}
        assert rec.states("keep-1") == ["passed"] and len(rec.status_reports("keep-1")) == 2
        assert rec.uploads("keep-1") == [b"\xb3r", b"\xb3r"]
        assert rec.status_reports("gone-1") == []
    finally:
        rec.stop()
    assert outbox(config, "list")[1]["entries"] == []


def test_flush_leaves_a_running_workers_outbox_to_it(tmp_path: Path) -> None:
    config = tmp_path / "worker.yaml"
    config.write_text(yaml.safe_dump({"outbox_dir": str(tmp_path / "outbox")}))
    box = Outbox(tmp_path / "outbox" / "busy")
    box.add_status("t", "http://127.0.0.1:9/", {"test_id": "t", "status": "passed"})
    box.claim()  # as a running worker does
    try:
        code, flushed = outbox(config, "flush", "--timeout", "1")
        assert code == 0 and "delivered by another process" in flushed["busy"]["busy"]
    finally:
        box.release()
