"""Generated bad payloads through a real gearmand to a real worker: each one ends
`rejected` naming the field that is wrong, the worker never falls over, and a valid job
runs afterwards."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from farm_lab.gearmand import Gearmand
from farm_lab.gearmand import running as running_gearmand
from farm_lab.workers import TEMPEST, WorkerProcess, start_worker
from farm_worker import defaults
from farm_worker.protocol import VERSION_PATTERN, run_function
from harness.checks import leftovers
from harness.gearclient import TestClient, events, summary, wait
from harness.payloads import VALID, valid, with_field

pytestmark = [pytest.mark.gearman, pytest.mark.tempest, pytest.mark.slow]
RUN = run_function(TEMPEST)
EXAMPLES = 1000

# (path, JSON type) of every field of the valid base payload a mutation may hit
FIELDS: list[tuple[str, str]] = [
    ("test_id", "string"), ("tempest", "object"), ("tempest.version", "string"),
    ("conf", "object"), ("conf.identity", "object"), ("conf.identity.uri_v3", "scalar"),
    ("tests", "object"), ("tests.regex", "string"), ("tests.include", "array"),
    ("tests.exclude", "array"), ("timeout_s", "integer"), ("dry_run", "boolean"),
]
REQUIRED = ["schema", "test_id", "tempest", "tempest.version", "conf"]  # no callback: conf
KNOWN = {"": set(VALID) | {"callback"}, "tempest": {"version"},
         "tests": {"regex", "include", "exclude"}}

floats = st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: f != int(f))
WRONG: dict[str, st.SearchStrategy[Any]] = {
    "string": st.one_of(st.integers(), floats, st.booleans(), st.none(),
                        st.lists(st.text(max_size=5), max_size=3),
                        st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)),
    "object": st.one_of(st.text(max_size=20), st.integers(), st.booleans(), st.none(),
                        st.lists(st.integers(), max_size=3)),
    "array": st.one_of(st.text(max_size=20), st.integers(), st.booleans(), st.none(),
                       st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)),
    "integer": st.one_of(st.text(max_size=20), floats, st.booleans(), st.none(),
                         st.lists(st.integers(), max_size=3)),
    "boolean": st.one_of(st.text(max_size=20), st.integers(), floats, st.none(),
                         st.lists(st.booleans(), max_size=3)),
    "scalar": st.one_of(st.none(), st.dictionaries(st.text(max_size=5), st.integers(),
                                                   min_size=1, max_size=3),
                        st.lists(st.dictionaries(st.text(max_size=3), st.integers(),
                                                 min_size=1), min_size=1, max_size=2)),
}


def _encode(doc: Any) -> bytes:
    return json.dumps(doc).encode()


@st.composite
def bad_payloads(draw: st.DrawFn) -> tuple[str, bytes, str | None]:
    """(kind, raw bytes, the field the rejection must name; None: any field)."""
    kind = draw(st.sampled_from(["wrong-type", "missing", "extra", "huge", "version",
                                 "not-json", "bad-utf8", "bytes", "test-id"]))
    base = valid(test_id=draw(st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True)))
    if kind == "wrong-type":
        path, typ = draw(st.sampled_from(FIELDS))
        return kind, _encode(with_field(base, path, draw(WRONG[typ]))), path
    if kind == "missing":
        path = draw(st.sampled_from(REQUIRED))
        return kind, _encode(with_field(base, path, ...)), path
    if kind == "extra":
        where = draw(st.sampled_from(sorted(KNOWN)))
        name = draw(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,30}", fullmatch=True)
                    .filter(lambda n: n not in KNOWN[where]))
        path = f"{where}.{name}" if where else name
        value = draw(st.integers() | st.text(max_size=8))
        return kind, _encode(with_field(base, path, value)), path
    if kind == "huge":
        size = draw(st.integers(min_value=5000, max_value=2 * defaults.PAYLOAD_MAX_BYTES))
        path = draw(st.sampled_from(["test_id", "tests.regex", "conf.identity.uri_v3"]))
        raw = _encode(with_field(base, path, "x" * size))
        return kind, raw, "payload" if len(raw) > defaults.PAYLOAD_MAX_BYTES else path
    if kind == "version":
        version = draw(st.text(max_size=20).filter(lambda v: not re.match(VERSION_PATTERN, v))
                       | st.sampled_from(["40.0.0", "30.0.0", "47.0", "v47.0.0", "47.0.0 ",
                                          "047.0.0", "47.0.0-rc1", "\u0664\u0667.0.0"]))
        return kind, _encode(with_field(base, "tempest.version", version)), "tempest.version"
    if kind == "not-json":
        text = draw(st.text(max_size=200).filter(lambda t: not _is_json(t)))
        return kind, text.encode("utf-8", "surrogatepass"), "payload"
    if kind == "bad-utf8":
        raw = _encode(base)
        at = draw(st.integers(min_value=0, max_value=len(raw)))
        junk = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf8\x88\x80\x80"]))
        return kind, raw[:at] + junk + raw[at:], "payload"
    if kind == "test-id":
        tid = draw(st.text(min_size=1, max_size=100).filter(
            lambda t: not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", t)))
        return kind, _encode(with_field(base, "test_id", tid)), "test_id"
    raw = draw(st.binary(max_size=300))
    return kind, raw, None  # anything: most are not JSON, some are valid JSON of any shape


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


@pytest.fixture(scope="module")
def own_gearmand(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gearmand]:
    with running_gearmand(tmp_path_factory.mktemp("gearmand-payloads")) as server:
        yield server


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory, own_gearmand: Gearmand,
           worker_cache: Path, tempest47: Any) -> Iterator[WorkerProcess]:
    w = start_worker(tmp_path_factory.mktemp("bad-payloads"), gearman=[own_gearmand.address],
                     cache_dir=worker_cache, versions=[TEMPEST], worker_id="fuzz")
    try:
        yield w
    finally:
        w.stop()


def test_generated_bad_payloads_are_rejected_naming_the_field(
        own_gearmand: Gearmand, worker: WorkerProcess) -> None:
    client = TestClient(own_gearmand.address)
    seen: dict[str, int] = {}
    try:
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=bad_payloads())
        def one(case: tuple[str, bytes, str | None]) -> None:
            kind, raw, field = case
            job = wait(client.submit(RUN, raw), 30)
            doc = summary(job)
            assert doc["state"] == "rejected", (kind, raw[:300], doc)
            assert doc["field"] and doc["message"].startswith(f"{doc['field']}: "), doc
            if field is not None:
                assert doc["field"] == field, (kind, raw[:300], doc)
            assert [e["state"] for e in events(job)] == ["rejected"]
            assert worker.proc.poll() is None, worker.output()[-3000:]
            seen[kind] = seen.get(kind, 0) + 1

        one()
        print("bad payloads by kind:", seen)
        assert sum(seen.values()) >= EXAMPLES, seen
        assert len(seen) == 9, seen  # every kind of bad input was tried
        ok = summary(wait(client.submit(RUN, valid(test_id="after-fuzz")), 120))
        assert ok["state"] == "passed" and ok["total"] > 100, ok
    finally:
        client.shutdown()
    assert worker.proc.poll() is None
    log = worker.output()
    assert "Traceback" not in log and "internal error" not in log, log[-3000:]
    assert leftovers(worker.work_dir) == []
