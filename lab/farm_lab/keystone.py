"""A real OpenStack Identity (Keystone 30) on 127.0.0.1: SQLite, fernet, gunicorn.

Used by the end-to-end tests and by `make demo`. The venv is built once into the cache
from a pinned package set (keystone-requirements.txt) and reused; state lives in a
throwaway directory. Gotchas kept from the recipe that worked (FIELD_NOTES):
- Keystone parses sys.argv: under gunicorn a shim clears it first.
- SQLite needs one gunicorn process with one thread; the in-process cache saves ~200
  queries per request.
- Scope enforcement needs Tempest's [enforce_scope] keystone=true and [auth] admin_system.

    python -m farm_lab.keystone up STATE_DIR   # prints JSON: url, pid, conf
    python -m farm_lab.keystone down STATE_DIR
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from farm_lab.loopback import free_port, wait_http
from farm_lab.venvs import cached_venv

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "keystone-requirements.txt"
ADMIN_PASSWORD = "Secretadmin-5d2c"  # a distinctive value: the secret tests search for it
LOCKOUT_ATTEMPTS, LOCKOUT_DURATION, UNIQUE_LAST_PW = 2, 10, 2

_KEYSTONE_CONF = """\
[DEFAULT]
log_file = {state}/log/keystone.log
debug = false
public_endpoint = {url}

[database]
connection = sqlite:///{state}/keystone.db

[token]
provider = fernet
expiration = 3600

[fernet_tokens]
key_repository = {state}/fernet-keys
max_active_keys = 3

[fernet_receipts]
key_repository = {state}/fernet-keys

[credential]
key_repository = {state}/credential-keys

[identity]
# 4 bcrypt rounds: Tempest creates and authenticates many users (test-only setting)
password_hash_algorithm = bcrypt
password_hash_rounds = 4

[cache]
enabled = true
backend = dogpile.cache.memory

[security_compliance]
lockout_failure_attempts = {lockout_attempts}
lockout_duration = {lockout_duration}
unique_last_password_count = {unique_last_pw}
minimum_password_age = 0

[oslo_policy]
enforce_scope = true
enforce_new_defaults = true
"""

_SHIM = """\
import sys
sys.argv = sys.argv[:1]
from keystone.wsgi.api import application  # noqa: E402,F401
"""


def ensure_venv(root: Path | None = None) -> Path:
    """The Keystone venv for the pinned set, built once (about 20 s) and reused."""
    return cached_venv(REQUIREMENTS, "keystone", root)


@dataclass
class Keystone:
    venv: Path
    state: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    public: str | None = None  # the address clients use when it is not the listen address

    @property
    def public_url(self) -> str:
        """What the catalog announces and Tempest is given (a bridge address for hosts in
        other network namespaces), else the listen address."""
        return self.public or self.url

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pidfile(self) -> Path:
        return self.state / "run" / "keystone.pid"

    def _manage(self, *args: str) -> None:
        subprocess.run([str(self.venv / "bin" / "keystone-manage"), "--config-file",
                        str(self.state / "etc" / "keystone.conf"), *args], check=True,
                       env=self._env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL"))}
        env.update(OS_KEYSTONE_CONFIG_DIR=str(self.state / "etc"), PYTHONWARNINGS="ignore")
        return env

    def configure(self) -> None:
        for sub in ("etc", "log", "run", "fernet-keys", "credential-keys"):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        (self.state / "fernet-keys").chmod(0o700)
        (self.state / "credential-keys").chmod(0o700)
        (self.state / "etc" / "keystone.conf").write_text(_KEYSTONE_CONF.format(
            state=self.state, url=self.public_url, lockout_attempts=LOCKOUT_ATTEMPTS,
            lockout_duration=LOCKOUT_DURATION, unique_last_pw=UNIQUE_LAST_PW))
        (self.state / "run" / "keystone_wsgi_shim.py").write_text(_SHIM)
        user, group = str(os.getuid()), str(os.getgid())
        self._manage("db_sync")
        import sqlite3

        with sqlite3.connect(self.state / "keystone.db") as db:
            db.execute("PRAGMA journal_mode=WAL")
        self._manage("fernet_setup", "--keystone-user", user, "--keystone-group", group)
        self._manage("credential_setup", "--keystone-user", user, "--keystone-group", group)
        self._manage("bootstrap", "--bootstrap-password", ADMIN_PASSWORD,
                     "--bootstrap-username", "admin", "--bootstrap-project-name", "admin",
                     "--bootstrap-role-name", "admin", "--bootstrap-service-name", "keystone",
                     "--bootstrap-region-id", "RegionOne",
                     "--bootstrap-admin-url", f"{self.public_url}/v3",
                     "--bootstrap-internal-url", f"{self.public_url}/v3",
                     "--bootstrap-public-url", f"{self.public_url}/v3")

    def start(self, timeout_s: float = 60) -> None:
        log = (self.state / "log" / "gunicorn.stdout").open("wb")
        proc = subprocess.Popen(
            [str(self.venv / "bin" / "gunicorn"), "--bind", f"127.0.0.1:{self.port}",
             "--workers", "1", "--threads", "1", "--timeout", "120",
             "--pid", str(self.pidfile),
             "--access-logfile", str(self.state / "log" / "access.log"),
             "--error-logfile", str(self.state / "log" / "gunicorn.log"),
             "--pythonpath", str(self.state / "run"), "keystone_wsgi_shim:application"],
            env=self._env(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()
        self.proc = proc
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        (self.state / "run" / "master.pid").write_text(str(proc.pid))
        problem = wait_http(f"{self.url}/v3", proc, timeout_s)
        if problem:
            self.stop()
            raise RuntimeError(f"keystone {problem}; see {self.state}/log")

    def stop(self) -> None:
        """Stop gunicorn's process group: ours (Popen) or one started by `up` earlier."""
        pidfile = self.state / "run" / "master.pid"
        pid = self.pid or (int(pidfile.read_text()) if pidfile.exists() else None)
        if pid is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            if self.proc is not None:
                try:
                    self.proc.wait(15)
                    break
                except subprocess.TimeoutExpired:
                    continue
            end = time.monotonic() + 15
            while time.monotonic() < end and _alive(pid):
                time.sleep(0.1)
            if not _alive(pid):
                break
        pidfile.unlink(missing_ok=True)
        self.proc = None

    def _admin_token(self) -> str:
        import requests

        resp = requests.post(f"{self.url}/v3/auth/tokens", timeout=60, json={"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "password": ADMIN_PASSWORD, "domain": {"name": "Default"}}}},
            "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}})
        resp.raise_for_status()
        return str(resp.headers["X-Subject-Token"])

    def make_accounts(self, prefix: str, count: int,
                      role: str = "member") -> list[dict[str, Any]]:
        """`count` users, each with a project of its own and `role` on it, as Tempest's
        pre-provisioned accounts (accounts.yaml items); made again when they exist."""
        import requests

        headers = {"X-Auth-Token": self._admin_token()}
        api = f"{self.url}/v3"

        def find(kind: str, name: str) -> str | None:
            found = requests.get(f"{api}/{kind}", params={"name": name}, headers=headers,
                                 timeout=60).json()[kind]
            return str(found[0]["id"]) if found else None

        def create(kind: str, body: dict[str, Any]) -> str:
            key = kind.rstrip("s")
            resp = requests.post(f"{api}/{kind}", json={key: body}, headers=headers,
                                 timeout=60)
            resp.raise_for_status()
            return str(resp.json()[key]["id"])

        role_id = find("roles", role)
        assert role_id is not None, f"keystone has no role {role!r}"
        accounts = []
        for i in range(count):
            name = f"{prefix}-{i}"
            for kind in ("users", "projects"):
                old = find(kind, name)
                if old:
                    requests.delete(f"{api}/{kind}/{old}", headers=headers, timeout=60)
            password = f"Acct-{name}-pw-9f2e"
            project = create("projects", {"name": name, "domain_id": "default"})
            user = create("users", {"name": name, "password": password, "domain_id": "default",
                                    "default_project_id": project})
            requests.put(f"{api}/projects/{project}/users/{user}/roles/{role_id}",
                         headers=headers, timeout=60).raise_for_status()
            accounts.append({"username": name, "password": password, "project_name": name,
                             "user_domain_name": "Default", "project_domain_name": "Default",
                             "roles": [role]})
        return accounts

    @staticmethod
    def policy_conf() -> dict[str, dict[str, Any]]:
        """What this Keystone's keystone.conf sets and its API does not show (the security
        compliance rules): what an operator adds to a discovered conf."""
        return {"identity": {"user_lockout_failure_attempts": LOCKOUT_ATTEMPTS,
                             "user_lockout_duration": LOCKOUT_DURATION,
                             "user_unique_last_password_count": UNIQUE_LAST_PW,
                             "user_minimum_password_age": 0},
                "identity-feature-enabled": {"security_compliance": True}}

    def tempest_conf(self, password: str = ADMIN_PASSWORD) -> dict[str, dict[str, Any]]:
        """The payload `conf` for an identity-only run against this Keystone."""
        return {
            "auth": {"use_dynamic_credentials": True, "admin_username": "admin",
                     "admin_password": password, "admin_project_name": "admin",
                     "admin_domain_name": "Default", "admin_user_domain_name": "Default",
                     "admin_project_domain_name": "Default", "admin_system": "all"},
            "identity": {"uri_v3": f"{self.public_url}/v3", "auth_version": "v3",
                         "region": "RegionOne", "v3_endpoint_type": "public",
                         "admin_role": "admin", "default_domain_id": "default",
                         **self.policy_conf()["identity"]},
            "identity-feature-enabled": {"api_v2": False, "api_v2_admin": False,
                                         "api_v3": True, "trust": True, "access_rules": True,
                                         "domain_specific_drivers": False,
                                         **self.policy_conf()["identity-feature-enabled"]},
            "enforce_scope": {"keystone": True},
            "service_available": {s: False for s in
                                  ("cinder", "neutron", "glance", "swift", "nova", "horizon")},
            "validation": {"run_validation": False},
        }


def _alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def up(state: Path, port: int | None = None, public: str | None = None) -> Keystone:
    """A configured, answering Keystone on 127.0.0.1:`port`; `public` (scheme://host:port)
    is the address its catalog announces when clients reach it some other way."""
    ks = Keystone(ensure_venv(), state, port or free_port(), public=public)
    ks.configure()
    ks.start()
    return ks


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("up", "down"):
        print(__doc__, file=sys.stderr)
        return 2
    state = Path(argv[2]).resolve()
    if argv[1] == "up":
        ks = up(state)
        print(json.dumps({"url": ks.url, "pid": ks.pid, "conf": ks.tempest_conf()}))
        return 0
    Keystone(ensure_venv(), state, 0).stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
