"""The store on SQLite and on a real PostgreSQL: migrations, tokens, reports, results."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from farm_client.subunit_results import parse
from farm_server.lifecycle import Report, Verdict
from farm_server.models import Base, TestRow
from farm_server.store import Store, StoreError, hash_token
from farm_server.store.results import Stored
from farm_worker.protocol import TestState
from harness.postgres import Postgres
from harness.subunit_streams import stream

S = TestState


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'farm.db'}"
    postgres: Postgres = request.getfixturevalue("postgres")
    return postgres.new_database()


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    s = Store(url)
    s.migrate()
    try:
        yield s
    finally:
        s.engine.dispose()


def new_test(store: Store, test_id: str = "t1", admin: str = "pw",
             region: str = "RegionOne") -> TestRow:
    """A queued test whose conf holds `admin` as the cloud's admin password."""
    conf = {"auth": {"admin_password": admin}, "identity": {"region": region}}
    row = TestRow(id=test_id, state="queued", tempest_version="47.0.0", dry_run=False,
                  conf_json=json.dumps(conf),
                  tests_json=json.dumps({"regex": "x", "include": [], "exclude": []}),
                  message="queued")
    return store.create_test(row, lambda: ("127.0.0.1:4730", "H:1"), "alice")


def test_migrations_match_the_models(store: Store) -> None:
    assert store.revision() == store.head() == "0009"
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_upgrade_keeps_existing_data(url: str) -> None:
    s = Store(url)
    try:
        s.migrate("0001")
        with s.engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO tests (id, state, tempest_version, dry_run, message, created_at,"
                " updated_at) VALUES ('old-1', 'passed', '40.0.0', false, 'from 0001',"
                " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"))
        token = s.add_worker("old-host", [])
        s.migrate()
        assert s.revision() == s.head()
        old = s.get("old-1")
        assert old is not None and old.message == "from 0001" and old.cancel_handle is None
        assert s.worker_for(token) is not None
        s.migrate()  # a second run changes nothing
        assert s.revision() == s.head()
    finally:
        s.engine.dispose()


def test_tokens_are_stored_hashed(store: Store) -> None:
    token = store.add_worker("w1", ["10.0.0.0/8"])
    with store.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT token_hash FROM workers")).scalar_one()
    assert stored == hash_token(token) and token not in stored
    worker = store.worker_for(token)
    assert worker is not None and worker.name == "w1"
    assert store.worker_for(token + "x") is None
    with pytest.raises(StoreError, match="exists already"):
        store.add_worker("w1", [])
    user_token = store.add_user("alice")
    assert store.user_for(user_token) is not None and store.worker_for(user_token) is None


def test_create_test_is_all_or_nothing(store: Store) -> None:
    def broken_submit() -> tuple[str, str]:
        raise RuntimeError("gearmand down")

    row = TestRow(id="t-x", state="queued", tempest_version="47.0.0", dry_run=True,
                  message="queued")
    with pytest.raises(RuntimeError):
        store.create_test(row, broken_submit, None)
    assert store.get("t-x") is None
    assert store.history("t-x") == []
    created = new_test(store)
    assert (created.gearman_server, created.gearman_handle) == ("127.0.0.1:4730", "H:1")
    with pytest.raises(StoreError):
        new_test(store)


def test_the_test_is_committed_before_its_job_is_queued(store: Store) -> None:
    """A worker can take the job the moment it is queued and ask for the test's conf
    (another server process, another connection): the test must be there by then."""
    other = Store(store.url)
    seen: list[TestRow | None] = []

    def submit() -> tuple[str, str]:
        seen.append(other.get("t-seen"))
        return "127.0.0.1:4730", "H:2"

    row = TestRow(id="t-seen", state="queued", tempest_version="47.0.0", dry_run=True,
                  message="queued", conf_json="{}")
    try:
        store.create_test(row, submit, None)
        assert seen and seen[0] is not None and seen[0].conf_json == "{}"
        stored = other.get("t-seen")
        assert stored is not None and (stored.gearman_server, stored.gearman_handle) == (
            "127.0.0.1:4730", "H:2")
    finally:
        other.engine.dispose()


def test_reports_move_the_state_and_are_all_kept(store: Store) -> None:
    new_test(store)
    steps = [(S.INSTALLING, Verdict.APPLY), (S.RUNNING, Verdict.APPLY),
             (S.RUNNING, Verdict.DUPLICATE), (S.CANCELLED, Verdict.APPLY),
             (S.RUNNING, Verdict.KEEP)]
    for i, (state, verdict) in enumerate(steps):
        applied = store.apply("t1", Report(state, state.value, "w1"), source="worker",
                              report_id=f"w1:{i}")
        assert applied is not None and applied.verdict is verdict, state
    test = store.get("t1")
    assert test is not None and test.state == "cancelled" and test.finished_at is not None
    history = store.history("t1")
    assert [(h.state, h.applied) for h in history] == [
        ("queued", True), ("installing", True), ("running", True), ("cancelled", True),
        ("running", False)]
    # reports delivered again after newer ones (a worker's outbox delivers at least once):
    # known by their id, answered duplicate, recorded once
    for i, (state, verdict) in enumerate(steps):
        if verdict is Verdict.DUPLICATE:  # never recorded, so its id is not known
            continue
        applied = store.apply("t1", Report(state, state.value, "w1"), source="worker",
                              report_id=f"w1:{i}")
        assert applied is not None and applied.verdict is Verdict.DUPLICATE, state
        assert applied.state is S.CANCELLED
    assert len(store.history("t1")) == len(history)
    # the same news under a new id is a new report (RefStack-style clients send no id)
    applied = store.apply("t1", Report(S.RUNNING, "running", "w1"), source="worker",
                          report_id="w1:9")
    assert applied is not None and applied.verdict is Verdict.KEEP
    assert len(store.history("t1")) == len(history) + 1
    assert store.apply("nope", Report(S.RUNNING, "", None), source="worker") is None


def test_progress_is_stored(store: Store) -> None:
    new_test(store)
    store.apply("t1", Report(S.RUNNING, "2/5", "w1", (2, 5, "a.b")), source="worker",
                progress={"done": 2, "total": 5, "current": "a.b", "passed": 2})
    test = store.get("t1")
    assert test is not None
    assert (test.progress_done, test.progress_total, test.progress_current, test.passed) == (
        2, 5, "a.b", 2)


def test_the_conf_a_run_uses_is_kept_without_its_secrets(store: Store) -> None:
    new_test(store)
    used = {"identity": {"uri_v3": "http://k/v3"},
            "auth": {"admin_password": "slipped-through-1", "admin_username": "admin"}}
    store.apply("t1", Report(S.RUNNING, "5 tests", "w1"), source="worker",
                payload={"conf": used})
    test = store.get("t1")
    assert test is not None and test.tempest_conf_json is not None
    kept = json.loads(test.tempest_conf_json)
    assert kept == {"identity": {"uri_v3": "http://k/v3"},
                    "auth": {"admin_password": "<removed>", "admin_username": "admin"}}
    # a conf that is not {section: {key: text}} is not kept; the state still moves
    store.apply("t1", Report(S.PASSED, "done", "w1"), source="worker",
                payload={"conf": {"identity": ["x"]}})
    test = store.get("t1")
    assert test is not None and test.state == "passed"
    assert json.loads(test.tempest_conf_json or "null") == kept


def test_late_news_from_the_holder_after_the_monitor_gave_up(store: Store) -> None:
    new_test(store)
    store.apply("t1", Report(S.RUNNING, "5 tests", "w1"), source="worker")
    lost = "worker lost: no report for 600 s and no gearmand has the job any more"
    store.apply("t1", Report(S.ERROR, lost, None), source="monitor")
    # what came before the final state is history; another worker's final is refused
    for report, verdict in ((Report(S.UPLOADING, "1 bytes", "w1"), Verdict.KEEP),
                            (Report(S.PASSED, "5 passed", "w2"), Verdict.KEEP)):
        applied = store.apply("t1", report, source="worker")
        assert applied is not None and applied.verdict is verdict, report
    applied = store.apply("t1", Report(S.PASSED, "5 passed", "w1", (5, 5, "")),
                          source="worker", progress={"done": 5, "total": 5, "passed": 5})
    assert applied is not None and applied.verdict is Verdict.APPLY
    test = store.get("t1")
    assert test is not None and test.state == "passed" and test.passed == 5
    assert test.message == f"5 passed (delivered late, after the monitor ended it: {lost})"
    assert [(h.source, h.state, h.applied) for h in store.history("t1")][-4:] == [
        ("monitor", "error", True), ("worker", "uploading", False),
        ("worker", "passed", False), ("worker", "passed", True)]
    # and once final, it stays so
    applied = store.apply("t1", Report(S.FAILED, "again", "w1"), source="worker")
    assert applied is not None and applied.verdict is Verdict.KEEP


def test_concurrent_reports_keep_a_consistent_history(store: Store) -> None:
    new_test(store)
    errors: list[BaseException] = []

    def report(n: int) -> None:
        try:
            store.apply("t1", Report(S.RUNNING, f"{n}", "w1", (n, 100, None)),
                        source="worker", progress={"done": n, "total": 100})
        except BaseException as exc:  # pragma: no cover - the assertion shows it
            errors.append(exc)

    threads = [threading.Thread(target=report, args=(n,)) for n in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.history("t1")) == 41


def test_results_replace_previous_upload(store: Store) -> None:
    new_test(store)
    first = stream([("a.T.test_1", "success", ""), ("a.T.test_2", "fail", "boom")])
    assert store.store_results("t1", parse(first), first) is Stored.STORED
    second = stream([("a.T.test_1", "success", "")])
    assert store.store_results("t1", parse(second), second) is Stored.STORED
    # the same bytes again (an outbox delivers at least once): answered as such
    assert store.store_results("t1", parse(second), second) is Stored.DUPLICATE
    rows, raw = store.results("t1")
    assert [r.name for r in rows] == ["a.T.test_1"]
    assert raw is not None and raw.data == second
    test = store.get("t1")
    assert test is not None and (test.passed, test.failed) == (1, 0)
    assert store.store_results("missing", parse(second), second) is Stored.NO_TEST


def test_find_filters_and_pages(store: Store) -> None:
    for i in range(7):
        new_test(store, f"t{i}")
    store.apply("t3", Report(S.ERROR, "x", None), source="worker")
    rows, total, capped = store.find(limit=3, offset=0)
    assert total == 7 and len(rows) == 3 and not capped
    rows, total, _ = store.find(states=["error"])
    assert total == 1 and rows[0].id == "t3"
    rows, total, _ = store.find(version="40.0.0")
    assert total == 0 and rows == []
    # counted up to the cap: a count that does not read the whole table
    assert store.find(limit=2, cap=5)[1:] == (5, True)
    assert store.find(limit=2, cap=7)[1:] == (7, False)
    assert len(store.find(limit=3, offset=6, cap=5)[0]) == 1  # pages go on past the cap


def test_two_servers_queue_a_tests_automatic_upload_once(store: Store, url: str) -> None:
    """Every server sharing the database runs an uploader: each one, at the same moment,
    tries to queue the same run's upload; one row results."""
    new_test(store)
    stores = [Store(url) for _ in range(6)]
    start = threading.Barrier(len(stores))
    queued: list[object] = []

    def queue(s: Store) -> None:
        start.wait()
        queued.append(s.add_automatic_upload("t1", "http://rs.example/api", None))

    try:
        threads = [threading.Thread(target=queue, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for s in stores:
            s.engine.dispose()
    assert sum(row is not None for row in queued) == 1
    assert len(store.uploads("t1")) == 1
    assert store.add_automatic_upload("t1", "http://other.example/api", None) is not None
    assert store.add_automatic_upload("gone", "http://rs.example/api", None) is None


def test_one_uploader_claims_a_due_upload(store: Store, url: str) -> None:
    """Two uploaders read the same due row; the claim lets one attempt it. The row is due
    again when its holder's lease runs out (it died mid-attempt), never before."""
    new_test(store)
    assert store.add_automatic_upload("t1", "http://rs.example/api", None) is not None
    other = Store(url)
    try:
        now = dt.datetime.now(dt.UTC)
        lease = now + dt.timedelta(seconds=180)
        mine, theirs = store.due_uploads(now), other.due_uploads(now)
        assert len(mine) == len(theirs) == 1
        assert store.claim_upload(mine[0], now, lease)
        assert not other.claim_upload(theirs[0], now, lease)
        assert store.due_uploads(now + dt.timedelta(seconds=179)) == []
        later = lease + dt.timedelta(seconds=1)
        [again] = other.due_uploads(later)
        assert other.claim_upload(again, later, later + dt.timedelta(seconds=180))
        other.update_upload(again.id, state="uploaded", attempts=1, next_at=None)
        assert not store.claim_upload(mine[0], later, later)  # recorded: nothing to take
        assert store.due_uploads(later + dt.timedelta(days=1)) == []
    finally:
        other.engine.dispose()


def test_an_ended_tests_passwords_are_not_kept(store: Store, url: str, tmp_path: Path) -> None:
    """The configuration is the cloud's admin password: kept while a worker may still ask
    for it (get-miniconf), dropped when the test ends; on SQLite no copy stays in the
    database file or its WAL once the monitor's pass has run."""
    files = [tmp_path / "farm.db", tmp_path / "farm.db-wal"]

    def on_disk() -> bytes:
        return b"".join(f.read_bytes() for f in files if f.exists())

    # another process's idle connection (the server's), as in production: SQLite keeps the
    # WAL while any connection is open
    other_engine = sa.create_engine(url)
    other_process = other_engine.connect()
    try:
        for i in range(1, 9):  # confs of several sizes, as clouds have
            new_test(store, f"t{i}", f"Pw-0f-the-cl0ud-4-t{i}", f"Region{'-x' * 40 * i}")
        password, older = "Pw-0f-the-cl0ud-4-t1", "Pw-0f-the-cl0ud-4-t2"
        store.apply("t1", Report(S.RUNNING, "1 tests", "w1"), source="worker")
        assert password in (store.get("t1").conf_json or "")  # type: ignore[union-attr]
        for i in (1, *range(3, 9)):
            store.apply(f"t{i}", Report(S.RUNNING, "1 tests", "w1"), source="worker")
            store.apply(f"t{i}", Report(S.PASSED, "1 passed", "w1"), source="worker")
        assert store.get("t1").conf_json is None  # type: ignore[union-attr]
        # a test that ended before the server dropped configurations at the end
        store.apply("t2", Report(S.CANCELLED, "cancelled", None), source="server")
        with store.engine.begin() as conn:
            conn.execute(sa.update(TestRow).where(TestRow.id == "t2").values(
                conf_json=json.dumps({"auth": {"admin_password": older}})))
        if url.startswith("sqlite"):
            assert password.encode() in on_disk()  # dropped, but the files still hold it
        checkpointed = store.forget_ended_secrets()
        assert store.get("t2").conf_json is None  # type: ignore[union-attr]
        if url.startswith("sqlite"):
            assert checkpointed and not store.forget_ended_secrets()  # nothing new ended
            assert b"Pw-0f-the-cl0ud" not in on_disk()
            with store.engine.connect() as conn:  # freed space zeroed whatever the pattern
                assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 1
        else:
            assert not checkpointed
    finally:
        other_process.close()
        other_engine.dispose()


def test_a_sqlite_database_is_private(tmp_path: Path) -> None:
    """It holds cloud passwords while tests run: 0600, and so are its WAL and shm."""
    path = tmp_path / "farm.db"
    old = os.umask(0o022)
    try:
        store = Store(f"sqlite:///{path}")
        store.migrate()
        new_test(store)
    finally:
        os.umask(old)
    try:
        for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            assert name.exists() and stat.S_IMODE(name.stat().st_mode) == 0o600, name
    finally:
        store.engine.dispose()


def test_a_readable_sqlite_database_is_tightened(tmp_path: Path) -> None:
    path = tmp_path / "farm.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    Store(f"sqlite:///{path}").engine.dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_missing_sqlite_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"database_url: the directory .*/nowhere does not "
                                         r"exist; create it \(mode 0700"):
        Store(f"sqlite:///{tmp_path / 'nowhere' / 'farm.db'}")
    assert not (tmp_path / "nowhere").exists()


def test_revoke_and_rotate(store: Store, url: str) -> None:
    token = store.add_worker("h1", [])
    assert store.worker_for(token) is not None
    other = Store(url)  # another server process: it refuses a changed token at once too
    try:
        assert other.worker_for(token) is not None
        new = store.rotate("worker", "h1")
        assert other.worker_for(token) is None and other.worker_for(new) is not None
        assert store.worker_for(token) is None and store.worker_for(new) is not None
        store.revoke("worker", "h1")
        assert other.worker_for(new) is None and store.workers() == []
        user = store.add_user("u1")
        assert other.user_for(user) is not None
        store.revoke("user", "u1")
        assert other.user_for(user) is None
        with pytest.raises(StoreError, match="no user 'u1'"):
            store.rotate("user", "u1")
    finally:
        other.engine.dispose()
