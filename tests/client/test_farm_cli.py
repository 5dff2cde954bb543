"""`farm` as people and scripts use it, against a real gearmand, real worker processes, a
real `farm-server serve` and real Tempest (dry runs where a full run adds nothing)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from farm_lab.gearmand import Gearmand, status
from farm_lab.keystone import ADMIN_PASSWORD, Keystone
from farm_lab.loopback import Silent
from farm_lab.server import FarmServer, server_worker
from farm_lab.workers import WorkerFactory
from farm_worker.environments import PrepareResult
from farm_worker.protocol import cancel_function
from harness.checks import leftovers, processes_under
from harness.farmcli import farm, start_farm
from harness.recorder import Recorder

pytestmark = [pytest.mark.gearman, pytest.mark.tempest]
SMOKE = r"tempest\.api\.identity\..*smoke"
DUMMY_CONF = {"identity": {"uri_v3": "http://127.0.0.1:9/v3"}}


def write_json(path: Path, doc: object) -> Path:
    path.write_text(json.dumps(doc))
    return path


def counts_row(out: str) -> dict[str, str]:
    """The result table's cells by column: passed, failed, skipped, not run, selected,
    worker, tempest."""
    lines = out.splitlines()
    (at,) = [i for i, line in enumerate(lines) if "┃" in line and "not run" in line]
    head = [c.strip() for c in lines[at].strip("┃ ").split("┃")]
    row = [c.strip() for c in lines[at + 2].strip("│ ").split("│")]
    return dict(zip(head, row, strict=True))


def direct(gearmand: Gearmand) -> tuple[str, ...]:
    return ("--gearman", gearmand.address)


def via(server: FarmServer) -> dict[str, str]:
    return {"FARM_SERVER_URL": server.url, "FARM_TOKEN": server.user_token}


def test_dry_run_submit_wait_straight_to_gearmand(tmp_path: Path, gearmand: Gearmand,
                                                  workers: WorkerFactory,
                                                  tempest47: PrepareResult) -> None:
    workers.start("cli-dry")
    conf = write_json(tmp_path / "conf.json", DUMMY_CONF)
    r = farm(tmp_path, "submit", *direct(gearmand), "--tempest", "47.0.0", "--conf", str(conf),
             "--regex", "tempest.api.identity", "--dry-run", "--wait", "--test-id", "cli-dry-1")
    assert r.returncode == 0, r.stdout + r.stderr
    # not a terminal: plain lines, no escape codes or carriage returns
    assert "\x1b[" not in r.stdout and "\r" not in r.stdout
    lines = r.stdout.splitlines()
    assert lines[0].startswith("cli-dry-1 queued on tempest:run:47.0.0 via gearmand")
    assert any("cli-dry-1 installing on cli-dry" in line for line in lines), r.stdout
    assert any("cli-dry-1 passed on cli-dry: dry run: 138 tests selected" in line
               for line in lines), r.stdout
    # the table says what the message says: 138 selected, none run
    assert counts_row(r.stdout) == {"passed": "0", "failed": "0", "skipped": "0",
                                    "not run": "138", "selected": "138",
                                    "worker": "cli-dry", "tempest": "47.0.0"}, r.stdout
    # --json gives the worker's summary
    r = farm(tmp_path, "submit", *direct(gearmand), "--tempest", "47.0.0", "--conf", str(conf),
             "--regex", "tempest.api.identity.v3.test_tokens", "--dry-run", "--wait", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["state"] == "passed" and summary["worker"] == "cli-dry"
    assert 0 < summary["total"] < 138 and summary["not_run"] == summary["total"]


def test_submit_then_watch_through_the_server(tmp_path: Path, server: FarmServer,
                                              workers: WorkerFactory,
                                              tempest47: PrepareResult) -> None:
    server_worker(workers, server, "cli-srv")
    payload = write_json(tmp_path / "job.json", {
        "tempest": {"version": "47.0.0"}, "conf": DUMMY_CONF,
        "tests": {"regex": "tempest.api.identity"}, "dry_run": True})
    r = farm(tmp_path, "submit", str(payload), "--test-id", "cli-srv-1", "--json", env=via(server))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"test_id": "cli-srv-1", "function": "tempest:run:47.0.0",
                                    "via": "server", "handle": None, "server": None}
    r = farm(tmp_path, "watch", "cli-srv-1", env=via(server))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "cli-srv-1 passed on cli-srv: dry run: 138 tests selected" in r.stdout
    assert "\x1b[" not in r.stdout
    # through the server, the same table as straight to gearmand
    assert counts_row(r.stdout) == {"passed": "0", "failed": "0", "skipped": "0",
                                    "not run": "138", "selected": "138",
                                    "worker": "cli-srv", "tempest": "47.0.0"}, r.stdout
    r = farm(tmp_path, "status", "cli-srv-1", env=via(server))
    assert r.returncode == 0 and "cli-srv-1: passed" in r.stdout
    assert "counts: 0 passed, 0 failed, 0 skipped, 138 not run of 138 selected" in r.stdout
    assert [line.split()[1] for line in r.stdout.splitlines()[3:]] == [
        "queued", "installing", "passed"], r.stdout
    r = farm(tmp_path, "list", "--state", "passed", "--json", env=via(server))
    assert [t["id"] for t in json.loads(r.stdout)["tests"]] == ["cli-srv-1"]
    # the same test id again: refused, and still one run
    r = farm(tmp_path, "submit", str(payload), "--test-id", "cli-srv-1", env=via(server))
    assert r.returncode == 2 and "exists already" in r.stderr
    assert json.loads(farm(tmp_path, "list", "--json", env=via(server)).stdout)["total"] == 1


@pytest.mark.cloud
def test_identity_smoke_run_wait_and_results(tmp_path: Path, server: FarmServer,
                                             workers: WorkerFactory, keystone: Keystone,
                                             tempest47: PrepareResult) -> None:
    server_worker(workers, server, "cli-smoke")
    conf = write_json(tmp_path / "conf.json", keystone.tempest_conf())
    r = farm(tmp_path, "submit", "--tempest", "47.0.0", "--conf", str(conf), "--regex", SMOKE,
             "--test-id", "cli-smoke-1", "--wait", env=via(server))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "cli-smoke-1 running on cli-smoke" in r.stdout
    assert "test cli-smoke-1: passed" in r.stdout and "FAILED" not in r.stdout
    doc = json.loads(farm(tmp_path, "results", "cli-smoke-1", "--format", "json",
                          env=via(server)).stdout)
    passed = [x for x in doc["results"] if x["status"] == "success"]
    assert len(passed) == doc["test"]["summary"]["passed"] >= 10
    junit = farm(tmp_path, "results", "cli-smoke-1", "--format", "junit", env=via(server))
    assert junit.stdout.startswith("<?xml") and "<testsuite" in junit.stdout
    out = tmp_path / "report.html"
    r = farm(tmp_path, "results", "cli-smoke-1", "--format", "html", "-o", str(out),
             env=via(server))
    html = out.read_text()
    assert r.returncode == 0 and "<h2>Every test (" in html and "src=" not in html
    assert passed[0]["name"].split("[")[0] in html
    sub = tmp_path / "run.subunit"
    farm(tmp_path, "results", "cli-smoke-1", "--format", "subunit", "-o", str(sub),
         env=via(server))
    assert sub.read_bytes().startswith(b"\xb3")
    for text in (r.stdout, r.stderr, html, server.log.read_text()):
        assert ADMIN_PASSWORD not in text


@pytest.mark.cloud
def test_classes_failing_in_setupclass_are_counted_and_grouped(
        tmp_path: Path, server: FarmServer, workers: WorkerFactory, keystone: Keystone,
        tempest47: PrepareResult) -> None:
    """An admin that does not exist: every admin class fails in setUpClass with the same
    error. Its tests are `not run`, the classes are named as such, one traceback is shown.
    (A wrong password instead would lock the real admin out: Keystone's lockout.) The
    worker's preflight is off, so that Tempest meets the refused credentials itself."""
    server_worker(workers, server, "cli-cls", preflight=False)
    conf = keystone.tempest_conf()
    conf["auth"]["admin_username"] = "no-such-admin"
    conf_file = write_json(tmp_path / "conf.json", conf)
    regex = r"tempest\.api\.identity\.admin\.v3\.(test_domains|test_groups)\."
    r = farm(tmp_path, "submit", "--tempest", "47.0.0", "--conf", str(conf_file), "--regex",
             regex, "--test-id", "cli-cls-1", "--wait", env=via(server))
    assert r.returncode == 1, r.stdout + r.stderr
    cells = counts_row(r.stdout)
    selected = int(cells["selected"])
    assert selected > 10 and cells["passed"] == cells["failed"] == "0", r.stdout
    assert int(cells["not run"]) == selected - int(cells["skipped"]), r.stdout
    assert "class level: 2 failed in setUpClass or tearDownClass" in r.stdout
    assert "FAILED 2 tests, same error:" in r.stdout, r.stdout
    assert r.stdout.count("Traceback (most recent call last)") == 1, r.stdout
    t = json.loads(farm(tmp_path, "status", "cli-cls-1", "--json", env=via(server)).stdout)
    s = t["test"]["summary"]
    assert (s["total"], s["classes_failed"], s["done"]) == (selected, 2, selected), s
    assert "2 classes failed in setUpClass or tearDownClass" in t["test"]["message"]
    # JSON keeps every failure
    doc = json.loads(farm(tmp_path, "results", "cli-cls-1", "--format", "json",
                          env=via(server)).stdout)
    assert sorted(x["name"].split(" ")[0] for x in doc["results"]
                  if x["status"] == "fail") == ["setUpClass", "setUpClass"]


def test_no_worker_for_the_version(tmp_path: Path, gearmand: Gearmand, server: FarmServer,
                                   workers: WorkerFactory, tempest47: PrepareResult) -> None:
    workers.start("cli-47")
    conf = write_json(tmp_path / "conf.json", DUMMY_CONF)
    for env in ({}, via(server)):
        r = farm(tmp_path, "submit", *direct(gearmand), "--tempest", "33.0.0", "--conf",
                 str(conf), "--regex", "tempest.api", "--dry-run", env=env)
        assert r.returncode == 2, r.stdout + r.stderr
        assert "no worker serves tempest:run:33.0.0; registered versions: 47.0.0" in r.stderr
    assert status(gearmand.port).get("tempest:run:33.0.0", (0, 0, 0))[0] == 0


def test_cancel_queued_it_never_starts(tmp_path: Path, gearmand: Gearmand,
                                       workers: WorkerFactory, recorder: Recorder,
                                       tempest40: PrepareResult) -> None:
    """No worker serves 40.0.0 yet: the job waits; cancelled, it never runs, and a second
    submit of the same id while it waits is refused."""
    payload = write_json(tmp_path / "job.json", {
        "test_id": "cli-cq-1", "tempest": {"version": "40.0.0"}, "conf": DUMMY_CONF,
        "tests": {"regex": "tempest.api.identity"}, "dry_run": True,
        "callback": {"url": recorder.url}})
    r = farm(tmp_path, "submit", str(payload), *direct(gearmand))
    assert r.returncode == 2 and "--queue-anyway" in r.stderr
    r = farm(tmp_path, "submit", str(payload), *direct(gearmand), "--queue-anyway")
    assert r.returncode == 0, r.stderr
    r = farm(tmp_path, "submit", str(payload), *direct(gearmand), "--queue-anyway")
    assert r.returncode == 2 and "already queued" in r.stderr
    assert status(gearmand.port)["tempest:run:40.0.0"][0] == 1
    r = farm(tmp_path, "status", "cli-cq-1", *direct(gearmand))
    assert r.returncode == 0 and r.stdout.startswith("cli-cq-1: queued on gearmand")
    r = farm(tmp_path, "cancel", "cli-cq-1", *direct(gearmand))
    assert r.returncode == 0 and "stops before Tempest starts" in r.stdout, r.stdout
    w = workers.start("cli-40", versions=("40.0.0",))
    end = time.monotonic() + 60
    while "cancelled" not in recorder.states("cli-cq-1"):
        assert time.monotonic() < end, recorder.states("cli-cq-1")
        time.sleep(0.2)
    assert "running" not in recorder.states("cli-cq-1")
    assert farm(tmp_path, "status", "cli-cq-1", *direct(gearmand)).returncode == 1
    st = status(gearmand.port)
    assert st.get("tempest:run:40.0.0", (0, 0, 0))[0] == 0
    assert st.get(cancel_function("cli-cq-1"), (0, 0, 0))[0] == 0
    assert leftovers(w.work_dir) == []


def test_cancel_queued_through_the_server(tmp_path: Path, gearmand: Gearmand,
                                          server: FarmServer, workers: WorkerFactory,
                                          tempest40: PrepareResult) -> None:
    r = farm(tmp_path, "submit", "--tempest", "40.0.0", "--dry-run", "--queue-anyway",
             "--test-id", "cli-scq-1", env=via(server))
    assert r.returncode == 0, r.stderr
    r = farm(tmp_path, "cancel", "cli-scq-1", "--wait", env=via(server))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "removed from the queue" in r.stdout and "cli-scq-1: cancelled" in r.stdout
    # gearmand keeps counting it (ignored) until a worker takes it: farm queue does not
    assert status(gearmand.port)["tempest:run:40.0.0"][0] == 1
    doc = json.loads(farm(tmp_path, "queue", "--json", env=via(server)).stdout)
    (f,) = [f for f in doc["servers"][0]["functions"] if f["name"] == "tempest:run:40.0.0"]
    assert (f["queued"], f["withdrawn"]) == (0, 1)
    r = farm(tmp_path, "queue", *direct(gearmand))
    assert "1 cancelled job(s) still counted as queued above" in r.stdout, r.stdout
    # a worker that could take it, registered for its function: gearmand has no job of that
    # function to hand it, so nothing can come
    w = server_worker(workers, server, "cli-s40", versions=("40.0.0",),
                      wait_for="tempest:run:40.0.0")
    queued, _, serving = status(gearmand.port)["tempest:run:40.0.0"]
    assert (queued, serving) == (0, 1)
    doc = server.api("GET", "/v1/tests/cli-scq-1").json()
    assert doc["test"]["state"] == "cancelled" and doc["test"]["worker"] is None
    assert "cli-scq-1" not in w.output()


@pytest.mark.cloud
def test_cancel_running_kills_the_tree(tmp_path: Path, gearmand: Gearmand,
                                             server: FarmServer, workers: WorkerFactory,
                                             keystone: Keystone,
                                             tempest47: PrepareResult) -> None:
    w = server_worker(workers, server, "cli-cr")
    conf = write_json(tmp_path / "conf.json", keystone.tempest_conf())
    farm(tmp_path, "submit", "--tempest", "47.0.0", "--conf", str(conf), "--regex",
         "tempest.api.identity", "--test-id", "cli-cr-1", env=via(server))
    doc = server.wait_state("cli-cr-1", {"running"})
    end = time.monotonic() + 120
    while not (doc["test"]["progress"]["done"] or 0) >= 1:  # Tempest is really running
        assert time.monotonic() < end
        time.sleep(0.2)
        doc = server.api("GET", "/v1/tests/cli-cr-1").json()
    assert processes_under(w.work_dir)
    asked = time.monotonic()
    r = farm(tmp_path, "cancel", "cli-cr-1", env=via(server))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "cancel sent: cli-cr-1 is running on " in r.stdout, r.stdout
    assert "; its worker kills Tempest, uploads what ran and ends it cancelled" in r.stdout
    while processes_under(w.work_dir):  # SIGTERM, then SIGKILL after KILL_GRACE_S
        assert time.monotonic() - asked < 60, "the Tempest process tree outlived 60 s"
        time.sleep(0.05)
    print(f"farm cancel: the Tempest tree gone {time.monotonic() - asked:.1f} s after the "
          "command started")
    doc = server.wait_state("cli-cr-1", {"cancelled", "passed", "failed", "error"}, 30)
    assert doc["test"]["state"] == "cancelled"
    assert leftovers(w.work_dir) == []
    r = farm(tmp_path, "cancel", "cli-cr-1", env=via(server))
    assert r.returncode == 1 and "already cancelled" in r.stdout
    assert status(gearmand.port).get(cancel_function("cli-cr-1"), (0, 0, 0))[0] == 0


def test_cancel_finished_or_unknown_queues_nothing(tmp_path: Path, gearmand: Gearmand,
                                                   workers: WorkerFactory,
                                                   tempest47: PrepareResult) -> None:
    workers.start("cli-fin")
    conf = write_json(tmp_path / "conf.json", DUMMY_CONF)
    r = farm(tmp_path, "submit", *direct(gearmand), "--tempest", "47.0.0", "--conf", str(conf),
             "--regex", "tempest.api.identity", "--dry-run", "--wait", "--test-id", "cli-fin-1")
    assert r.returncode == 0, r.stderr
    for test_id in ("cli-fin-1", "never-submitted"):
        r = farm(tmp_path, "cancel", test_id, *direct(gearmand))
        assert r.returncode == 1 and "nothing to cancel" in r.stdout, r.stdout
        # nothing queued for it (gearmand keeps rows of functions once registered)
        assert status(gearmand.port).get(cancel_function(test_id), (0, 0, 0))[0] == 0


@pytest.mark.cloud
def test_exit_codes(tmp_path: Path, gearmand: Gearmand, workers: WorkerFactory,
                    keystone: Keystone, tempest47: PrepareResult) -> None:
    """1 failed (Tempest against a closed port, on a worker without the preflight), 2 timed
    out (on a cloud that never answers) and error (the preflight refuses the credentials),
    3 cancelled on Ctrl-C with --cancel-on-interrupt, 130 when Ctrl-C only stops watching
    (the identity run against Keystone: long enough to be interrupted)."""
    raw = workers.start("cli-exit-raw", preflight=False)
    closed = write_json(tmp_path / "closed.json", {
        "identity": {"uri_v3": "http://127.0.0.1:9/v3"},
        "auth": {"use_dynamic_credentials": False}})
    cloud = write_json(tmp_path / "cloud.json", keystone.tempest_conf())
    base = ("submit", *direct(gearmand), "--tempest", "47.0.0", "--wait")
    r = farm(tmp_path, *base, "--conf", str(closed), "--regex",
             r"tempest\.api\.identity\.v3\.test_tokens")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAILED" in r.stdout and "Traceback" in r.stdout
    hung = Silent()
    try:  # nothing answers: only the timeout can end it, however fast the machine
        hanging = write_json(tmp_path / "hung.json", hung.tempest_conf())
        r = farm(tmp_path, *base, "--conf", str(hanging), "--regex", "tempest.api.identity",
                 "--timeout", "2")
    finally:
        hung.stop()
    assert r.returncode == 2 and "timed_out" in r.stdout, r.stdout + r.stderr
    raw.stop()
    workers.start("cli-exit")
    stranger = keystone.tempest_conf(password="Stranger-pw-4471")
    stranger["auth"]["admin_username"] = "nobody-cli"  # not the admin: no lockout
    r = farm(tmp_path, *base, "--conf", str(write_json(tmp_path / "who.json", stranger)),
             "--regex", "tempest.api.identity")
    assert r.returncode == 2 and "error" in r.stdout, r.stdout + r.stderr
    assert "preflight: [auth] admin_username, admin_password: Keystone at" in r.stdout
    assert "Stranger-pw-4471" not in r.stdout + r.stderr
    errors = {}
    for flags, code in ((("--cancel-on-interrupt",), 3), ((), 130)):
        p = start_farm(tmp_path, *base, "--conf", str(cloud), "--regex",
                       "tempest.api.identity", "--test-id", f"cli-int-{code}", *flags)
        try:
            assert p.stdout is not None
            for line in p.stdout:
                if " running on " in line:
                    break
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        assert p.returncode == code, out + err
        errors[code] = err
    assert "cli-int-3: cancelled" in errors[3]
    # the run that was only left alone goes on; cancelled now, it stops
    r = farm(tmp_path, "status", "cli-int-130", *direct(gearmand))
    assert r.returncode == 0 and "cli-int-130: running" in r.stdout, r.stdout
    r = farm(tmp_path, "cancel", "cli-int-130", "--wait", *direct(gearmand))
    assert r.returncode == 0, r.stdout + r.stderr


def test_two_gearmand_one_down(tmp_path: Path, gearmand: Gearmand, workers: WorkerFactory,
                               tempest47: PrepareResult) -> None:
    other = Gearmand(tmp_path / "gm2", queue="builtin")
    other.start()
    try:
        workers.start("cli-two", gearman=[gearmand.address, other.address])
        both = ("--gearman", other.address, "--gearman", gearmand.address)
        r = farm(tmp_path, "queue", *both, "--json")
        servers = json.loads(r.stdout)["servers"]
        assert [s["reachable"] for s in servers] == [True, True]
        assert all(any(f["name"] == "tempest:run:47.0.0" and f["workers"] == 1
                       for f in s["functions"]) for s in servers)
        other.stop()
        conf = write_json(tmp_path / "conf.json", DUMMY_CONF)
        for n in range(2):  # gear would alternate servers: both go to the live one
            r = farm(tmp_path, "submit", *both, "--tempest", "47.0.0", "--conf", str(conf),
                     "--regex", "tempest.api.identity", "--dry-run", "--wait",
                     "--test-id", f"cli-two-{n}")
            assert r.returncode == 0, r.stdout + r.stderr
            assert f"via gearmand {gearmand.address}" in r.stdout
        r = farm(tmp_path, "queue", *both)
        assert r.returncode == 0 and f"gearmand {other.address}: unreachable" in r.stdout
        assert f"gearmand {gearmand.address}" in r.stdout and "cli-two" in r.stdout
        r = farm(tmp_path, "ping", *both)
        assert r.returncode == 0 and r.stdout.startswith("cli-two ") and " ms " in r.stdout
    finally:
        other.stop()


GUIDELINE_FILE = Path(__file__).resolve().parents[1] / "data" / "interop" / "guidelines" / \
    "2020.06.json"


@pytest.mark.parametrize("way", ["direct", "server"])
def test_a_guideline_dry_run_reports_its_matching_and_capabilities(
        tmp_path: Path, gearmand: Gearmand, server: FarmServer, workers: WorkerFactory,
        tempest47: PrepareResult, way: str) -> None:
    """Straight to gearmand the worker's summary carries them; through the server, the
    stored test does: `--wait --json` gives both the same way."""
    if way == "direct":
        workers.start("cli-gl")
        flags, env = direct(gearmand), None
    else:
        server_worker(workers, server, "cli-gl-srv")
        flags, env = (), via(server)
    conf = write_json(tmp_path / "conf.json", DUMMY_CONF)
    r = farm(tmp_path, "submit", *flags, "--tempest", "47.0.0", "--conf", str(conf),
             "--guideline-file", str(GUIDELINE_FILE), "--type", "required,advisory",
             "--dry-run", "--wait", "--json", "--test-id", f"cli-gl-{way}", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    sel, report = doc["selection"], doc["compliance"]
    assert doc["state"] == "passed" and doc["total"] == sel["matched"] == 273, doc["message"]
    assert sel["not_found"] == [] and sel["by_name"] == 273
    assert report["types"] == ["required", "advisory"] and set(report["totals"]) == {"required"}
    assert report["summary"] == ("passes 0 of 275 required tests (0.0%); 2 of 78 required "
                                 "capabilities complete")  # the two whose tests are flagged


def test_submit_accounts_through_the_server(tmp_path: Path, server: FarmServer,
                                            workers: WorkerFactory,
                                            tempest47: PrepareResult) -> None:
    server_worker(workers, server, "cli-acct")
    conf = write_json(tmp_path / "conf.json", DUMMY_CONF)
    accounts = tmp_path / "accounts.yaml"
    accounts.write_text("- username: acct-1\n  password: Acct-cli-pw-77\n"
                        "  project_name: acct-1\n  roles: [member]\n")
    r = farm(tmp_path, "submit", "--tempest", "47.0.0", "--conf", str(conf), "--accounts",
             str(accounts), "--regex", "tempest.api.identity.v3.test_tokens", "--dry-run",
             "--wait", "--test-id", "cli-acct-1", env=via(server))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Acct-cli-pw-77" not in r.stdout + r.stderr + server.log.read_text()
    assert "Acct-cli-pw-77" not in server.api("GET", "/v1/tests/cli-acct-1").text
    bad = tmp_path / "bad.yaml"
    bad.write_text("username: acct-1\n")
    r = farm(tmp_path, "submit", "--tempest", "47.0.0", "--conf", str(conf), "--accounts",
             str(bad), "--test-id", "cli-acct-2", env=via(server))
    assert r.returncode == 2 and r.stderr.startswith(
        f"farm submit: --accounts: {bad}: must be a list of accounts"), r.stderr
