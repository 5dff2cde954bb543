"""The real RefStack server (refstack 2.1.0 from PyPI) on 127.0.0.1, on a real MariaDB.

Facts this rests on (found running it): refstack 2.1.0 needs SQLAlchemy < 2, oslo.db < 15
and gunicorn < 20.1 (refstack-requirements.txt pins a set that works on Python 3.11, with a
setuptools that still has pkg_resources); it runs on MySQL/MariaDB only (its migrations use
MySQL types); a signed upload is accepted only when its public key is in the `pubkeys`
table, which RefStack fills for a user signed in with OpenStack ID. The tests have no
OpenStack ID, so `register_key` makes the user and stores the key with RefStack's own
database API, after checking the key's self-signature with RefStack's own validator code,
exactly what `POST /v1/profile/pubkeys` does for a signed-in user.

MariaDB runs as our child process in a throwaway data directory (root's: `--user=root`),
RefStack under its own gunicorn, each stopped by PID. RefStack reads the interop guidelines
from `harness.guidelines` on 127.0.0.1 (its defaults point at opendev.org).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from farm_lab.loopback import free_port, wait_http
from farm_lab.venvs import cached_venv
from harness.guidelines import GuidelineWeb

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "refstack-requirements.txt"
DB_PASSWORD = "refstack-db-7f3e"

_CONF = """\
[DEFAULT]
ui_url = {url}
debug = false
log_file = {state}/log/refstack.log

[api]
api_url = {url}
app_dev_mode = false
enable_anonymous_upload = {anonymous}
{guidelines}
[database]
connection = mysql+pymysql://refstack:{password}@127.0.0.1:{db_port}/refstack
"""

_SHIM = """\
from refstack.api import app, config
application = app.setup_app(config)
"""


def _stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@dataclass
class MariaDB:
    data: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.data / "mysqld.sock"

    def start(self, timeout_s: float = 60) -> None:
        if not shutil.which("mariadbd") and not Path("/usr/sbin/mariadbd").exists():
            raise RuntimeError("MariaDB is not installed: apt-get install mariadb-server")
        self.port = self.port or free_port()
        self.data.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mariadb-install-db", "--no-defaults", "--user=root",
                        f"--datadir={self.data / 'db'}", "--skip-test-db",
                        "--auth-root-authentication-method=socket"],
                       check=True, capture_output=True)
        log = (self.data / "mariadb.log").open("wb")
        self.proc = subprocess.Popen(
            ["/usr/sbin/mariadbd", "--no-defaults", "--user=root",
             f"--datadir={self.data / 'db'}", f"--socket={self.socket}",
             f"--pid-file={self.data / 'mariadb.pid'}", "--bind-address=127.0.0.1",
             f"--port={self.port}", "--skip-name-resolve", "--innodb-flush-log-at-trx-commit=0",
             "--innodb-buffer-pool-size=64M"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError((self.data / "mariadb.log").read_text()[-2000:])
            if self.sql("SELECT 1", check=False).returncode == 0:
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("MariaDB did not start")

    def sql(self, statement: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot",
                               "-e", statement], check=check, capture_output=True, text=True)

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None


@dataclass
class RefStack:
    """A RefStack API at `url` (its /v1 is the upload API) backed by `db`."""

    venv: Path
    state: Path
    db: MariaDB
    port: int = 0
    anonymous: bool = True
    proc: subprocess.Popen[bytes] | None = None
    registered: list[str] = field(default_factory=list)
    # the interop guidelines RefStack serves, from 127.0.0.1 (never opendev)
    guidelines: GuidelineWeb | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def conf(self) -> Path:
        return self.state / "etc" / "refstack.conf"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL"))}
        env.update(REFSTACK_OSLO_CONFIG=str(self.conf), PYTHONWARNINGS="ignore")
        return env

    def configure(self) -> None:
        self.port = self.port or free_port()
        for sub in ("etc", "log", "run"):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        self.db.sql("CREATE DATABASE refstack CHARACTER SET utf8mb4; "
                    f"CREATE USER 'refstack'@'127.0.0.1' IDENTIFIED BY '{DB_PASSWORD}'; "
                    "GRANT ALL ON refstack.* TO 'refstack'@'127.0.0.1'")
        self.conf.write_text(_CONF.format(url=self.url, state=self.state,
                                          anonymous=str(self.anonymous).lower(),
                                          guidelines=self.guidelines.refstack_options()
                                          if self.guidelines else "",
                                          password=DB_PASSWORD, db_port=self.db.port))
        subprocess.run([str(self.venv / "bin" / "refstack-manage"), "--config-file",
                        str(self.conf), "upgrade", "--revision", "head"],
                       check=True, capture_output=True, env=self._env())

    def start(self, timeout_s: float = 60) -> None:
        log = (self.state / "log" / "gunicorn.log").open("wb")
        self.proc = subprocess.Popen(
            [str(self.venv / "bin" / "gunicorn"), "--bind", f"127.0.0.1:{self.port}",
             "--workers", "1", "--timeout", "60", "--chdir", str(self.state / "run"),
             "refstack_wsgi:application"],
            env=self._env(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()
        problem = wait_http(f"{self.url}/v1/results", self.proc, timeout_s)
        if problem:
            self.stop()
            raise RuntimeError(f"refstack {problem}: "
                               + (self.state / "log" / "gunicorn.log").read_text()[-3000:])

    def stop(self) -> None:
        _stop(self.proc)
        self.proc = None

    def _python(self, code: str) -> str:
        done = subprocess.run([str(self.venv / "bin" / "python"), "-c", textwrap.dedent(code)],
                              check=False, capture_output=True, text=True, env=self._env())
        if done.returncode:
            raise RuntimeError(f"in RefStack's venv: {done.stderr[-2000:]}")
        return done.stdout

    def register_key(self, public_key_line: str, self_signature: str,
                     openid: str = "https://openstackid.org/farm-operator") -> None:
        """What `POST /v1/profile/pubkeys` does for a signed-in user: RefStack's validator
        checks the self-signature (over b"signature"), then its DB API stores the key."""
        self._python(f"""
            import json, types
            from oslo_config import cfg
            cfg.CONF([], default_config_files=[{str(self.conf)!r}])
            from refstack.api import validators
            from refstack.db import api as db
            body = json.dumps({{"raw_key": {public_key_line!r},
                                "self_signature": {self_signature!r}}}).encode()
            validators.PubkeyValidator().validate(types.SimpleNamespace(body=body))
            db.user_save({{"openid": {openid!r}, "email": "operator@example.org",
                           "fullname": "Farm Operator"}})
            fmt, key = {public_key_line!r}.split()[:2]
            db.store_pubkey({{"openid": {openid!r}, "format": fmt, "pubkey": key,
                              "comment": "farm"}})
        """)
        self.registered.append(public_key_line)

    def stored(self, result_id: str) -> dict[str, Any]:
        """A stored result as RefStack keeps it: cpid, duration, names and uuids, owner."""
        doc: dict[str, Any] = json.loads(self._python(f"""
            import json
            from oslo_config import cfg
            cfg.CONF([], default_config_files=[{str(self.conf)!r}])
            from refstack.db import api as db
            info = db.get_test_result({result_id!r},
                                      allowed_keys=["id", "cpid", "duration_seconds", "meta"])
            rows = db.get_test_results({result_id!r})
            print(json.dumps({{"cpid": info["cpid"],
                               "duration_seconds": info["duration_seconds"],
                               "meta": info.get("meta") or {{}},
                               "results": sorted([r["name"], r.get("uuid")] for r in rows)}}))
        """))
        return doc


def up(state: Path, *, anonymous: bool = True) -> RefStack:
    web = GuidelineWeb()
    rs = RefStack(cached_venv(REQUIREMENTS, "refstack"), state / "refstack",
                  MariaDB(state / "mariadb"), anonymous=anonymous, guidelines=web)
    try:
        rs.db.start()
        web.start()
        (rs.state / "run").mkdir(parents=True, exist_ok=True)
        (rs.state / "run" / "refstack_wsgi.py").write_text(_SHIM)
        rs.configure()
        rs.start()
    except BaseException:
        down(rs)
        raise
    return rs


def down(rs: RefStack) -> None:
    rs.stop()
    rs.db.stop()
    if rs.guidelines is not None and rs.guidelines.thread.is_alive():
        rs.guidelines.stop()
