"""The interop guidelines (tests/data/interop) served on 127.0.0.1 the way RefStack 2.1.0
reads them from opendev, so the real RefStack serves them offline:

- `[api] opendev_api_capabilities_url` -> `<url>/contents/guidelines`, and
  `additional_capability_urls` -> `<url>/contents/add-ons/guidelines`: a contents listing,
  a JSON array of `{"type": "file", "name", "path"}`;
- `[api] opendev_raw_base_url` -> `<url>/raw/`: RefStack asks for
  `guidelines/<version>.json` and `add-ons/guidelines/<add-on>.<version>.json`.

`requests` counts what was asked, so a test can tell RefStack read them here.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections import Counter
from pathlib import Path

INTEROP = Path(__file__).resolve().parents[1] / "data" / "interop"


class GuidelineWeb:
    def __init__(self, root: Path = INTEROP) -> None:
        self.root = root
        self.requests: Counter[str] = Counter()
        web = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                web.requests[self.path] += 1
                status, body = web.answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, path: str) -> tuple[int, bytes]:
        path = path.split("?", 1)[0]
        for prefix in ("/contents/", "/raw/"):
            if path.startswith(prefix):
                rel = path[len(prefix):].strip("/")
                target = (self.root / rel).resolve()
                if not target.is_relative_to(self.root):
                    break
                if prefix == "/raw/" and target.is_file():
                    return 200, target.read_bytes()
                if prefix == "/contents/" and target.is_dir():
                    listing = [{"type": "file", "name": f.name, "path": f"{rel}/{f.name}"}
                               for f in sorted(target.glob("*.json"))]
                    return 200, json.dumps(listing).encode()
        return 404, b'{"message": "not found"}'

    def start(self) -> GuidelineWeb:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def refstack_options(self) -> str:
        """The `[api]` lines of refstack.conf that point RefStack here."""
        return (f"opendev_api_capabilities_url = {self.url}/contents/guidelines\n"
                f"additional_capability_urls = {self.url}/contents/add-ons/guidelines\n"
                f"opendev_raw_base_url = {self.url}/raw/\n")
