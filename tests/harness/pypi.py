"""A package index on 127.0.0.1 (PEP 691 JSON simple API with PEP 700 upload times),
serving wheels from local wheelhouses: locking, downloading and installs on demand are
tested against a real index without the network.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name, parse_wheel_filename

from farm_lab.loopback import Loopback, QuietHandler

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


@dataclass
class LocalIndex:
    """Projects from wheel files; `uploaded` gives each wheel an upload time."""

    files: dict[str, Path] = field(default_factory=dict)  # file name -> path
    uploaded: dict[str, dt.datetime] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    _server: Loopback | None = None

    def add(self, wheelhouse: Path, uploaded: dt.datetime) -> LocalIndex:
        for whl in wheelhouse.glob("*.whl"):
            if whl.name not in self.files:
                self.files[whl.name] = whl
                self.uploaded[whl.name] = uploaded
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.port}/simple"

    def project(self, name: str) -> dict[str, Any] | None:
        want = canonicalize_name(name)
        files, versions = [], set()
        for fname, path in sorted(self.files.items()):
            dist, ver, _, _ = parse_wheel_filename(fname)
            if canonicalize_name(dist) != want:
                continue
            versions.add(str(ver))
            files.append({"filename": fname, "url": f"/files/{fname}",
                          "hashes": {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()},
                          "upload-time": self.uploaded[fname].strftime("%Y-%m-%dT%H:%M:%S.%fZ")})
        if not files:
            return None
        return {"meta": {"api-version": "1.1"}, "name": str(want), "files": files,
                "versions": sorted(versions)}

    def start(self) -> LocalIndex:
        index = self

        class Handler(QuietHandler):
            def do_HEAD(self) -> None:
                self.head_only = True
                self.do_GET()

            def do_GET(self) -> None:
                index.requests.append(self.path)
                parts = [p for p in self.path.split("?")[0].split("/") if p]
                if len(parts) == 2 and parts[0] == "simple":
                    doc = index.project(parts[1])
                    if doc is not None:
                        return self.send(200, json.dumps(doc).encode(), JSON_TYPE)
                if len(parts) == 2 and parts[0] == "files" and parts[1] in index.files:
                    data = index.files[parts[1]].read_bytes()
                    return self.send(200, data, "application/octet-stream")
                return self.send(404, b"not found", "text/plain")

        self._server = Loopback(Handler)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
