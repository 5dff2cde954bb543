"""Real subunit v2 streams written with python-subunit, for tests."""

from __future__ import annotations

import datetime as dt
import io

import subunit

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def stream(tests: list[tuple[str, str, str]], seconds: float = 1.0) -> bytes:
    """(test id, final status, traceback or reason) -> bytes; each test takes `seconds`."""
    buf = io.BytesIO()
    out = subunit.StreamResultToBytes(buf)
    now = T0
    for test_id, status, detail in tests:
        out.status(test_id=test_id, test_status="inprogress", timestamp=now)
        now += dt.timedelta(seconds=seconds)
        if detail:
            name = "traceback" if status in ("fail", "uxsuccess") else "reason"
            out.status(test_id=test_id, file_name=name, file_bytes=detail.encode(),
                       mime_type="text/plain;charset=utf8", eof=True, timestamp=now)
        out.status(test_id=test_id, test_status=status, timestamp=now)
    return buf.getvalue()
