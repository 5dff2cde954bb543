"""A farm deployed with the project's playbooks on real systemd hosts (harness.nspawn):
the packages the hosts install, and running playbooks from the controller namespace."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.nspawn import Hosts

ROOT = Path(__file__).resolve().parents[2]
PIP = [sys.executable, "-m", "pip"]
BIN = Path(sys.executable).parent


DISTRIBUTIONS = ("worker", "client", "server")


def wheelhouse(cache: Path, out: Path) -> tuple[Path, Path, Path, Path]:
    """The project's three wheels (built now, into `out`) and a directory with their
    dependencies (built once, cached by the digest of the three pyproject.toml files)."""
    digest = hashlib.sha256(b"".join((ROOT / d / "pyproject.toml").read_bytes()
                                     for d in DISTRIBUTIONS)).hexdigest()[:12]
    deps = cache / f"farm-deps-{digest}"
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    if not deps.is_dir():
        part = cache / f"farm-deps-{digest}.part"
        subprocess.run([*PIP, "wheel", "-q", "-w", str(part), "--index-url",
                        "https://pypi.org/simple", str(ROOT / "worker"), str(ROOT / "client"),
                        f"{ROOT / 'server'}[postgresql]"], check=True, env=env)
        for own in part.glob("refstack_farm_*.whl"):
            own.unlink()
        part.rename(deps)
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([*PIP, "wheel", "-q", "--no-deps", "-w", str(out),
                    *(str(ROOT / d) for d in DISTRIBUTIONS)],
                   check=True, env=env, capture_output=True)
    worker, client, server = (next(out.glob(f"refstack_farm_{d}-*.whl")) for d in DISTRIBUTIONS)
    return worker, client, server, deps


def changed_counts(output: str) -> dict[str, int]:
    """host -> changed=N from a playbook's PLAY RECAP."""
    return {m.group(1): int(m.group(2))
            for m in re.finditer(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", output, re.M)}


@dataclass
class DeployedFarm:
    hosts: Hosts
    inventory: Path
    groups: dict[str, list[str]]
    variables: dict[str, Any]

    def playbook(self, name: str, *args: str, timeout_s: float = 1200,
                 check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
               "ANSIBLE_NOCOLOR": "1", "PATH": f"{BIN}:{os.environ['PATH']}"}
        r = self.hosts.in_ctl([str(BIN / "ansible-playbook"), "-i", str(self.inventory),
                               str(ROOT / "playbooks" / name), *args],
                              cwd=ROOT, env=env, timeout=timeout_s)
        if check:
            assert r.returncode == 0, f"{name} failed:\n{r.stdout[-8000:]}\n{r.stderr[-3000:]}"
        return r

    def set_groups(self, **groups: list[str]) -> None:
        self.groups.update(groups)
        self.inventory = self.hosts.inventory(self.groups, self.variables)

    def on(self, host: str, command: str) -> str:
        r = self.hosts.ssh(host, command)
        assert r.returncode == 0, f"{host}: {command}: {r.stdout}{r.stderr}"
        return r.stdout

    def farm(self, *args: str) -> str:
        """The `farm` CLI on the server host, against its gearmand and itself."""
        return self.on("h1", "/opt/refstack-farm-server/bin/farm " + " ".join(args)
                       + f" --gearman {self.hosts.ip('h1')}:4730 --server http://127.0.0.1:8080/ "
                       "--token $(cat /var/lib/refstack-farm-server/tokens/users/operator)")
