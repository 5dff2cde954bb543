"""Live subunit parsing: outcomes, counts, durations, failure details, the raw copy."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

from farm_worker.protocol import Counts
from farm_worker.results import (
    MAX_DETAIL_BYTES,
    Collector,
    TestOutcome,
    consume,
    fixture_scope,
    summarize_file,
)
from harness.subunit_streams import stream

MIXED = [
    ("tempest.a.T.test_ok[id-1,smoke]", "success", ""),
    ("tempest.a.T.test_bad[id-2]", "fail", "Traceback (most recent call last):\nboom\n"),
    ("tempest.a.T.test_skip[id-3]", "skip", "service not available"),
    ("tempest.a.T.test_xfail[id-4]", "xfail", ""),
    ("setUpClass (tempest.b.U)", "fail", "setup exploded"),
    ("tempest.a.T.test_unexpected[id-5]", "uxsuccess", ""),
]


def test_counts_and_details() -> None:
    seen: list[TestOutcome] = []
    r = Collector(on_test=seen.append)
    consume(io.BytesIO(stream(MIXED, seconds=2.0)), r)
    c = r.counts()
    # the failed setUpClass is a class, not a test
    assert (c.passed, c.failed, c.skipped, c.classes_failed, r.done) == (2, 2, 1, 1, 6)
    assert [o.test_id for o in seen] == [t[0] for t in MIXED]
    bad = r.outcomes["tempest.a.T.test_bad[id-2]"]
    assert bad.failed and "boom" in bad.detail and bad.duration_s == 2.0
    assert r.outcomes["tempest.a.T.test_skip[id-3]"].detail == "service not available"
    assert {f.test_id for f in r.failures()} == {"tempest.a.T.test_bad[id-2]",
                                                 "setUpClass (tempest.b.U)",
                                                 "tempest.a.T.test_unexpected[id-5]"}
    assert r.wall_s == 12.0


def test_a_failed_class_accounts_for_its_tests_without_counting_them() -> None:
    selected = ["tempest.a.T.test_ok[id-1,smoke]", "tempest.b.U.test_one[id-6]",
                "tempest.b.U.test_two[id-7]", "tempest.b.UV.test_other[id-8]",
                "tempest.c.W.test_three[id-9]", "tempest.c.W.test_four[id-10]"]
    r = Collector(selected=selected)
    consume(io.BytesIO(stream([
        ("tempest.a.T.test_ok[id-1,smoke]", "success", ""),
        ("setUpClass (tempest.b.U)", "fail", "Traceback:\nInvalidCredentials: 401\n"),
        ("setUpClass (tempest.c.W)", "skip", "identity v2 is not available"),
    ])), r)
    c = r.counts()
    assert (c.total, c.passed, c.failed, c.skipped) == (6, 1, 0, 0)
    assert (c.classes_failed, c.classes_skipped, c.not_run) == (1, 1, 5)
    # done: the test that passed and the four of the two classes, not tempest.b.UV's
    assert c.done == 5 and c.any_failed
    assert fixture_scope("setUpClass (tempest.b.U)") == "tempest.b.U"
    assert fixture_scope("tearDownModule (tempest.b)") == "tempest.b"
    assert fixture_scope("tempest.b.U.test_one[id-6]") is None


def test_consume_from_a_live_pipe_keeps_an_identical_copy(tmp_path: Path) -> None:
    data = stream(MIXED) + b"non-subunit noise\n" + stream([("tempest.z.Z.test", "success", "")])
    read_fd, write_fd = os.pipe()

    def writer() -> None:
        with os.fdopen(write_fd, "wb") as w:
            for i in range(0, len(data), 7):  # dribble it in small pieces
                w.write(data[i:i + 7])
                w.flush()

    t = threading.Thread(target=writer)
    t.start()
    r = Collector()
    copy = tmp_path / "copy.subunit"
    with os.fdopen(read_fd, "rb") as source, copy.open("wb") as sink:
        consume(source, r, copy_to=sink)
    t.join()
    assert copy.read_bytes() == data
    assert r.done == 7
    assert summarize_file(copy).outcomes.keys() == r.outcomes.keys()


def test_current_test_is_the_one_in_progress() -> None:
    started: list[str] = []
    r = Collector(on_start=started.append)
    consume(io.BytesIO(stream(MIXED[:2])), r)
    assert started == [MIXED[0][0], MIXED[1][0]]
    assert r.current == MIXED[1][0]


def test_empty_stream() -> None:
    r = Collector()
    consume(io.BytesIO(b""), r)
    assert (r.done, r.counts(), r.wall_s) == (0, Counts(), 0.0)


def test_a_test_in_progress_when_the_stream_ends_is_not_counted() -> None:
    hung = stream(MIXED[:1]) + stream([("tempest.a.T.test_hung", "success", "")])[:-1]
    r = Collector()
    consume(io.BytesIO(hung), r)
    assert list(r.outcomes) == [MIXED[0][0]]


def test_failure_details_are_bounded() -> None:
    huge = "x" * (3 * MAX_DETAIL_BYTES)
    r = Collector()
    consume(io.BytesIO(stream([("tempest.a.T.test_loud", "fail", huge)])), r)
    assert r.outcomes["tempest.a.T.test_loud"].detail == "x" * MAX_DETAIL_BYTES

