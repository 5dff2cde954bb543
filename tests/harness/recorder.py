"""A real HTTP server on 127.0.0.1 that speaks the RefStack callback contract and records
every request, for tests of the worker's reporting. It can be told to fail (5xx) or to
require a bearer token (405 otherwise), to cause faults for real.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from farm_lab.loopback import Loopback, QuietHandler


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    answered: int = 0

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Recorder:
    token: str | None = None
    miniconf: dict[str, Any] = field(default_factory=dict)  # test_id -> conf
    testcases: dict[str, list[str]] = field(default_factory=dict)
    ended: dict[str, str] = field(default_factory=dict)  # test_id -> its final state there
    fail_status: int = 503
    fail_next: int = 0  # answer this many requests with fail_status first
    status_answer: dict[str, Any] = field(default_factory=lambda: {"accepted": True})
    requests: list[Request] = field(default_factory=list)
    # cleared: every request waits (up to a minute) until it is set again
    gate: threading.Event = field(default_factory=threading.Event)
    _server: Loopback | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.port}/"

    def start(self, port: int = 0) -> Recorder:
        recorder = self
        self.gate.set()

        class Handler(QuietHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                recorder.gate.wait(60)
                parts = urlsplit(self.path)
                req = Request(self.command, parts.path, parse_qs(parts.query),
                              dict(self.headers.items()), body)
                code, answer = recorder._answer(req)
                req.answered = code
                with recorder._lock:
                    recorder.requests.append(req)
                self.send(code, json.dumps(answer).encode(), "application/json")

            do_GET = do_POST = _serve

        self._server = Loopback(Handler, port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def _answer(self, req: Request) -> tuple[int, Any]:
        if self.token is not None and req.headers.get("Authorization") != f"Bearer {self.token}":
            return 405, {"error": "not a known testing host"}
        with self._lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                return self.fail_status, {"error": "injected failure"}
        test_id = (req.query.get("test_id") or [""])[0]
        if req.path == "/update-test-status/" and req.method == "POST":
            return 202, self.status_answer
        if req.path == "/post-result" and req.method == "POST":
            return 201, {"stored": len(self.upload_bytes(req))}
        if req.path == "/get-miniconf" and test_id in self.ended:  # as farm-server says it
            return 404, {"error": f"test {test_id} has no tempest configuration: it ended",
                         "test_id": test_id, "state": self.ended[test_id]}
        if req.path == "/get-miniconf" and test_id in self.miniconf:
            return 200, self.miniconf[test_id]
        if req.path == "/get-testcases" and test_id in self.testcases:
            return 200, {"testcases": self.testcases[test_id]}
        return 404, {"error": f"nothing at {req.path} for {test_id!r}"}

    @staticmethod
    def upload_bytes(req: Request) -> bytes:
        """The multipart field `file` of a POST /post-result."""
        head = f"Content-Type: {req.headers.get('Content-Type')}\r\n\r\n".encode()
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + req.body)
        for part in msg.iter_parts():
            if part.get_param("name", header="content-disposition") == "file":
                payload = part.get_payload(decode=True)
                return payload if isinstance(payload, bytes) else b""
        return b""

    # ---- what tests look at --------------------------------------------------------------
    def status_reports(self, test_id: str) -> list[dict[str, Any]]:
        with self._lock:
            reqs = list(self.requests)
        return [r.json() for r in reqs if r.path == "/update-test-status/"
                and r.answered == 202 and r.json().get("test_id") == test_id]

    def states(self, test_id: str) -> list[str]:
        """The distinct states reported, in order (progress repeats `running`)."""
        out: list[str] = []
        for report in self.status_reports(test_id):
            if not out or out[-1] != report["status"]:
                out.append(report["status"])
        return out

    def uploads(self, test_id: str) -> list[bytes]:
        with self._lock:
            reqs = list(self.requests)
        return [self.upload_bytes(r) for r in reqs if r.path == "/post-result"
                and r.answered == 201 and r.query.get("test_id") == [test_id]]
