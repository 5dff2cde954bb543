"""`make demo`: the whole farm on this machine, doing its main job for real.

A job server (Debian's gearmand when installed, else gear's pure-Python server in this
process), a real Keystone on 127.0.0.1 as the cloud under test, the status server
(`farm-server serve` on SQLite) and one worker with Tempest 47.0.0 prepared. Then, as a user
would: `farm submit --wait` of the `tempest.api.identity` run through the status server,
with live progress; the result table; the HTML report and the subunit stream saved under
./demo-results/; `farm list` and `farm queue`. Everything started here is stopped again,
also on Ctrl-C or failure. Caches (the Tempest template, the Keystone venv) stay in
$FARM_CACHE, so a second run starts in seconds.

    make demo                              # the identity API tests (~140 tests)
    make demo DEMO_ARGS="--regex smoke"    # a shorter selection
    make demo DEMO_ARGS="--guideline 2020.06"  # an interop guideline, read per capability
    make demo DEMO_ARGS=--keep             # keep it all running to look around; Ctrl-C ends
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from farm_lab.gearmand import Gearmand, find_gearmand
from farm_lab.jobserver import EmbeddedJobServer
from farm_lab.keystone import up as keystone_up
from farm_lab.server import FARM, FarmServer
from farm_lab.workers import start_worker
from farm_worker.environments import EnvironmentCache
from farm_worker.protocol import run_function

ROOT = Path(__file__).resolve().parents[1]

VERSION = "47.0.0"
RESULTS = ROOT / "demo-results"
GUIDELINES = ROOT / "tests" / "data" / "interop" / "guidelines"


def step(n: int, text: str) -> None:
    print(f"\n==> [{n}/7] {text}", flush=True)


def say(text: str) -> None:
    print(f"    {text}", flush=True)


def farm_cli(cfg: Path, *args: str, check: bool = False) -> int:
    """Run `farm` as a user would, its output straight to this terminal."""
    print(f"    $ farm {' '.join(shlex.quote(a) for a in args)}", flush=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FARM_")}
    return subprocess.run([FARM, *args, "-c", str(cfg)], env=env, check=check).returncode


class Demo:
    def __init__(self, base: Path, cache: Path, args: argparse.Namespace) -> None:
        self.base, self.cache, self.args = base, cache, args
        self.stack: list[Any] = []  # everything to stop, in start order

    def job_server(self) -> str:
        binary = None if self.args.embedded else find_gearmand()
        if binary:
            step(1, f"job server: gearmand ({binary}) on 127.0.0.1, persistent queue "
                    "(libsqlite3)")
            gearmand = Gearmand(self.base / "gearmand")
            gearmand.start()
            self.stack.append(gearmand)
            say(f"gearmand pid {gearmand.proc.pid if gearmand.proc else '?'} on "
                f"{gearmand.address}")
            return gearmand.address
        step(1, "job server: no gearmand installed; gear's pure-Python server in this "
                "process (TCP_NODELAY; production runs Debian's gearman-job-server)")
        embedded = EmbeddedJobServer()
        self.stack.append(embedded)
        say(f"listening on {embedded.server}")
        return str(embedded.server)

    def run(self) -> int:
        started = time.monotonic()
        gearman = self.job_server()

        step(2, f"Tempest {VERSION} for the worker: a locked dependency set, a wheelhouse "
                f"and a template environment (cached in {self.cache / 'worker-cache'})")
        prepared = EnvironmentCache(self.cache / "worker-cache").prepare(VERSION)
        say(f"{'built' if prepared.built else 'ready from the cache'} in "
            f"{prepared.seconds:.1f} s: {prepared.tests_listed} tests available")

        step(3, "the cloud under test: a real Keystone on 127.0.0.1")
        keystone = keystone_up(self.base / "keystone")
        self.stack.append(keystone)
        say(f"keystone pid {keystone.pid} at {keystone.url}/v3")

        step(4, "the status server: farm-server serve on SQLite, with a worker token and a user "
                "token")
        server = FarmServer(self.base / "server", [gearman])
        server.start()
        self.stack.append(server)
        say(f"{server.url} (pid {server.proc.pid if server.proc else '?'}), database "
            f"{server.base / 'server.db'}, log {server.log}")

        step(5, f"a worker that serves {run_function(VERSION)}")
        worker = start_worker(self.base / "worker", gearman=[gearman],
                              cache_dir=self.cache / "worker-cache", versions=[VERSION],
                              worker_id="demo-worker", wait_for=run_function(VERSION),
                              callbacks=[{"url": server.url, "token": server.worker_token}],
                              timeout_s=600)
        self.stack.append(worker)
        say(f"worker pid {worker.proc.pid}, log {worker.log}")

        cfg = self.base / "refstack.cfg"
        cfg.write_text(f"GEARMAN_SERVER = {gearman}\nTEST_METHOD = gearman\n"
                       f"FARM_SERVER_URL = {server.url}\nFARM_TOKEN = {server.user_token}\n")
        cfg.chmod(0o600)
        conf = self.base / "cloud.json"
        conf.write_text(json.dumps(keystone.tempest_conf()))
        conf.chmod(0o600)
        test_id = f"demo-{time.strftime('%Y%m%d-%H%M%S')}"

        if self.args.guideline:
            selection = ["--guideline-file", str(GUIDELINES / f"{self.args.guideline}.json")]
            what = (f"the required platform tests of interop guideline {self.args.guideline}"
                    f" (its copy in {GUIDELINES.relative_to(ROOT)}; against a RefStack "
                    f"server: --guideline {self.args.guideline} --refstack URL)")
        else:
            selection, what = ["--regex", self.args.regex], self.args.regex
        step(6, f"farm submit --wait: {what} through the status server")
        t0 = time.monotonic()
        code = farm_cli(cfg, "submit", "--tempest", VERSION, "--conf", str(conf), *selection,
                        "--test-id", test_id, "--wait")
        say(f"exit code {code} after {time.monotonic() - t0:.0f} s")
        if code == 130:
            raise KeyboardInterrupt

        step(7, "looking around")
        RESULTS.mkdir(exist_ok=True)
        html, sub = RESULTS / f"{test_id}.html", RESULTS / f"{test_id}.subunit"
        farm_cli(cfg, "results", test_id, "--format", "html", "-o", str(html))
        farm_cli(cfg, "results", test_id, "--format", "subunit", "-o", str(sub))
        farm_cli(cfg, "list")
        farm_cli(cfg, "queue")
        say(f"HTML report:    {html}")
        say(f"subunit stream: {sub}")
        if self.args.keep:
            say("")
            say("everything keeps running; in another terminal try:")
            for command in ("list", f"status {test_id}", f"results {test_id}", "queue",
                            "ping", f"submit --tempest {VERSION} --conf {conf} --regex "
                            "smoke --wait"):
                say(f"  .venv/bin/farm {command} -c {cfg}")
            say("Ctrl-C stops it all")
            signal.pause()
        else:
            say("to keep it all running and try farm list / status / results / queue / "
                "ping yourself: make demo DEMO_ARGS=--keep")
        say(f"the whole demo took {time.monotonic() - started:.0f} s")
        return code

    def stop(self) -> None:
        print("\n==> stopping everything this demo started", flush=True)
        for thing in reversed(self.stack):
            try:
                thing.stop()
            except Exception as exc:  # keep stopping the rest
                print(f"    stopping {thing.__class__.__name__}: {exc}", file=sys.stderr)
        self.stack.clear()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--regex", default=r"^tempest\.api\.identity",
                        help="the Tempest selection to run (default: the identity API tests)")
    parser.add_argument("--guideline", metavar="VERSION",
                        help="run an interop guideline's required platform tests instead, "
                             "read per capability: "
                             + ", ".join(sorted(p.stem for p in GUIDELINES.glob("*.json"))))
    parser.add_argument("--embedded", action="store_true",
                        help="use gear's pure-Python job server even if gearmand is installed")
    parser.add_argument("--keep", action="store_true",
                        help="keep everything running after the run, until Ctrl-C")
    args = parser.parse_args()
    if args.guideline and not (GUIDELINES / f"{args.guideline}.json").is_file():
        parser.error(f"--guideline: {args.guideline!r}: no such guideline in {GUIDELINES}; "
                     "there are: " + ", ".join(sorted(p.stem for p in GUIDELINES.glob("*.json"))))
    cache = Path(os.environ.get("FARM_CACHE") or Path.home() / ".cache" / "refstack-farm")
    os.environ.setdefault("FARM_TEST_CACHE", str(cache))  # farm_lab's Keystone venv cache
    # a second SIGTERM or SIGINT must not interrupt the clean-up
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with tempfile.TemporaryDirectory(prefix="farm-demo-") as tmp:
        demo = Demo(Path(tmp), cache, args)
        try:
            return demo.run()
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr)
            return 130
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            demo.stop()


if __name__ == "__main__":
    sys.exit(main())
