"""Real systemd hosts for the Ansible tests: Debian bookworm roots booted with
`systemd-nspawn -b`, each in its own network namespace on a private bridge that exists only
inside a controller namespace, reachable by SSH from there.

- The base image is debootstrapped once and cached as a .tar.zst in $FARM_CACHE/nspawn.
- apt inside the hosts reaches this machine's Debian mirror through socat (the hosts have
  no route out); Python packages come from a package index of the tests, bridged the same
  way (`bridge()`).
- `down()` powers the hosts off, kills what is left, deletes the namespaces and unmounts
  the overlays: called from a fixture's finally, it leaves nothing behind.
- A run that was killed (SIGKILL, a CI timeout) cannot tear down: its namespaces carry the
  pid of the process that made them (`rsf<pid>-ctl`) and its state directory an `owner`
  file, so the next `up()` reaps what belongs to a dead process and never touches the
  hosts of a run still going.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from farm_lab.loopback import free_port

PACKAGES = "systemd,systemd-sysv,dbus,openssh-server,python3,python3-apt,iproute2,procps,sudo"
TOOLS = ("systemd-nspawn", "debootstrap", "socat", "zstd", "ssh", "ip")


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


def mirror_host() -> str:
    """The Debian mirror this machine's apt uses (http)."""
    texts = []
    for path in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]:
        if path.is_file():
            texts.append(path.read_text(errors="replace"))
    for text in texts:
        for line in text.splitlines():
            if line.strip().startswith(("deb ", "URIs:")):
                m = re.search(r"http://([^/\s]+)", line)
                if m:
                    return m.group(1)
    return "deb.debian.org"


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, text=True, capture_output=True)


def base_image(cache: Path) -> Path:
    """A bookworm root with systemd, sshd, python3 and sudo; built once, then cached."""
    root, image = cache / "base", cache / "base.tar.zst"
    if (root / "etc").is_dir():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    if not image.exists():
        tmp = cache / "base.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        log = cache / "debootstrap.log"
        with log.open("w") as fh:
            subprocess.run(["debootstrap", "--variant=minbase", f"--include={PACKAGES}",
                            "bookworm", str(tmp), f"http://{mirror_host()}/debian"],
                           check=True, stdout=fh, stderr=subprocess.STDOUT)
        run(["tar", "-C", str(tmp), "-I", "zstd -T0", "-cf", f"{image}.part", "."])
        os.replace(f"{image}.part", image)
        shutil.rmtree(tmp)
    part = cache / "base.part"
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir()
    run(["tar", "-C", str(part), "-I", "zstd", "-xf", str(image)])
    os.replace(part, root)
    return root


@dataclass
class Hosts:
    """N booted hosts h1..hN at NET.21..; the controller namespace holds the bridge NET.1."""

    state: Path
    cache: Path
    prefix: str = field(default_factory=lambda: f"rsf{os.getpid()}")
    net: str = "10.213.77"
    names: list[str] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)  # what to stop: name -> pid
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    # systemd-nspawn --bind/--bind-ro arguments: "*" for every host, or a host's name
    binds: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ctl(self) -> str:
        return f"{self.prefix}-ctl"

    @property
    def bridge_dev(self) -> str:
        return "rsfbr0"  # links live in the controller namespace: no clash between runs

    @property
    def bridge_ip(self) -> str:
        return f"{self.net}.1"

    def ip(self, name: str) -> str:
        return f"{self.net}.{20 + int(name[1:])}"

    @property
    def key(self) -> Path:
        return self.state / "ssh" / "id_ed25519"

    def _spawn(self, name: str, argv: list[str], log: Path) -> None:
        with log.open("wb") as fh:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fh,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(proc)
        self.pids[name] = proc.pid

    def bridge(self, name: str, port: int, target: str) -> None:
        """Make `target` (host:port, reachable from this machine) answer at
        bridge_ip:port for every host."""
        sock = self.state / "run" / f"{name}.sock"
        self._spawn(f"socat-{name}-host", ["socat", f"UNIX-LISTEN:{sock},fork,unlink-early",
                                           f"TCP:{target}"], self.state / "run" / f"{name}.log")
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.02)
        self._spawn(f"socat-{name}-ctl",
                    ["ip", "netns", "exec", self.ctl, "socat",
                     f"TCP-LISTEN:{port},bind={self.bridge_ip},fork,reuseaddr",
                     f"UNIX-CONNECT:{sock}"], self.state / "run" / f"{name}-ctl.log")

    def up(self, count: int) -> None:
        base = base_image(self.cache)
        (self.state / "ssh").mkdir(parents=True, exist_ok=True)
        (self.state / "run").mkdir(exist_ok=True)
        if not self.key.exists():
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)])
        reap_stale(base)
        (self.state / "owner").write_text(f"{os.getpid()}\n")
        run(["ip", "netns", "add", self.ctl])
        run(["ip", "-n", self.ctl, "link", "set", "lo", "up"])
        run(["ip", "-n", self.ctl, "link", "add", self.bridge_dev, "type", "bridge"])
        run(["ip", "-n", self.ctl, "addr", "add", f"{self.bridge_ip}/24", "dev",
             self.bridge_dev])
        run(["ip", "-n", self.ctl, "link", "set", self.bridge_dev, "up"])
        mirror = mirror_host()
        self.bridge("apt", 80, f"{mirror}:80")
        for i in range(1, count + 1):
            self.add_host(f"h{i}", base, mirror)

    def add_host(self, name: str, base: Path | None = None, mirror: str | None = None) -> None:
        base = base or base_image(self.cache)
        mirror = mirror or mirror_host()
        i = int(name[1:])
        ns, ip = f"{self.prefix}-{name}", self.ip(name)
        run(["ip", "netns", "add", ns])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        run(["ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name",
             f"rsf-v{i}", "netns", self.ctl])
        run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        run(["ip", "-n", ns, "route", "add", "default", "via", self.bridge_ip])
        run(["ip", "-n", self.ctl, "link", "set", f"rsf-v{i}", "master",
             self.bridge_dev, "up"])
        d = self.state / "roots" / name
        merged = d / "merged"
        for sub in ("upper", "work", "merged"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        run(["mount", "-t", "overlay", "overlay", "-o",
             f"lowerdir={base},upperdir={d / 'upper'},workdir={d / 'work'}", str(merged)])
        ssh_dir = merged / "root" / ".ssh"
        ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copy(f"{self.key}.pub", ssh_dir / "authorized_keys")
        (ssh_dir / "authorized_keys").chmod(0o600)
        (merged / "etc" / "hostname").write_text(f"{name}\n")
        (merged / "etc" / "hosts").write_text(
            f"127.0.0.1 localhost\n127.0.1.1 {name}\n{self.bridge_ip} {mirror}\n")
        resolv = merged / "etc" / "resolv.conf"
        if resolv.is_symlink():
            resolv.unlink()
        resolv.write_text("nameserver 127.0.0.1\n")  # no DNS in here: lookups fail fast
        self._spawn(name, ["systemd-nspawn", "--register=no", "--keep-unit", "-q", "-M",
                           f"{self.prefix}-{name}", "-D", str(merged),
                           f"--network-namespace-path=/run/netns/{ns}", "-b",
                           "--console=passive", "--resolv-conf=off",
                           *self.binds.get("*", []), *self.binds.get(name, [])],
                    self.state / "run" / f"nspawn-{name}.log")
        self.names.append(name)
        end = time.monotonic() + 60
        while not self._ssh_answers(ip):
            if time.monotonic() > end:
                log = (self.state / "run" / f"nspawn-{name}.log").read_text()
                raise RuntimeError(f"{name} did not boot: {log[-2000:]}")
            time.sleep(0.1)

    def _ssh_answers(self, ip: str) -> bool:
        probe = subprocess.run(["ip", "netns", "exec", self.ctl, "bash", "-c",
                                f"exec 3<>/dev/tcp/{ip}/22 && head -c4 <&3"],
                               capture_output=True, timeout=5, check=False)
        return probe.stdout.startswith(b"SSH")

    def forward_ssh(self, name: str) -> int:
        """A port on 127.0.0.1 (this namespace) that reaches the host's sshd: for testinfra,
        which runs inside pytest."""
        port = free_port()
        self._spawn(f"ssh-{name}", ["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr",
                                    f"EXEC:ip netns exec {self.ctl} socat STDIO "
                                    f"TCP\\:{self.ip(name)}\\:22"],
                    self.state / "run" / f"ssh-{name}.log")
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                    if s.recv(4) == b"SSH-":
                        return port
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"no ssh forward to {name}")

    def in_ctl(self, argv: list[str], *, cwd: Path | None = None,
               env: Mapping[str, str] | None = None,
               timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        """A command in the controller namespace (ansible-playbook, ssh)."""
        return subprocess.run(["ip", "netns", "exec", self.ctl, *argv], text=True,
                              capture_output=True, check=False, cwd=cwd, env=env,
                              timeout=timeout)

    def ssh(self, name: str, command: str) -> subprocess.CompletedProcess[str]:
        return self.in_ctl(["ssh", "-i", str(self.key), "-o", "StrictHostKeyChecking=no",
                            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                            f"root@{self.ip(name)}", command], timeout=120)

    def inventory(self, groups: Mapping[str, list[str]], variables: Mapping[str, Any]) -> Path:
        hosts = {n: {"ansible_host": self.ip(n)} for n in self.names}
        doc = {"all": {
            "vars": {"ansible_user": "root", "ansible_ssh_private_key_file": str(self.key),
                     "ansible_python_interpreter": "/usr/bin/python3", **variables},
            "children": {g: {"hosts": {n: hosts[n] for n in members}}
                         for g, members in groups.items()}}}
        path = self.state / "inventory.yml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def stop_host(self, name: str) -> None:
        pid = self.pids.pop(name, None)
        proc = next((p for p in self.procs if p.pid == pid), None)
        if proc is not None:
            proc.send_signal(signal.SIGTERM)  # nspawn: an orderly poweroff
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def down(self) -> None:
        for name in list(self.names):
            self.stop_host(name)
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        self.procs.clear()
        self.pids.clear()
        for ns in _netns():
            if ns.startswith(f"{self.prefix}-"):
                _delete_netns(ns)
        for d in sorted((self.state / "roots").glob("h*")):
            merged = d / "merged"
            if os.path.ismount(merged):
                subprocess.run(["umount", "-l", str(merged)], check=False)
            shutil.rmtree(d, ignore_errors=True)
        self.names.clear()



def _netns() -> list[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                            check=False).stdout
    return [line.split()[0] for line in listed.splitlines() if line.strip()]


def _delete_netns(ns: str) -> None:
    """Kill every process in the namespace (nspawn, sshd, socat), then delete it."""
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                          check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def reap_stale(base: Path) -> list[str]:
    """Remove the namespaces and overlay mounts of runs whose process is gone; return what
    was removed. Namespaces of this harness are `rsf<pid>-...` (`rsf-...` before the pid
    was added); an overlay on `base` belongs to the state directory holding its `owner`."""
    reaped = []
    for ns in _netns():
        m = re.fullmatch(r"rsf(\d*)-[\w-]+", ns)
        if m and (not m.group(1) or not Path(f"/proc/{m.group(1)}").exists()):
            _delete_netns(ns)
            reaped.append(f"netns {ns}")
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        fstype, options = fields[sep + 1], fields[-1]
        target = Path(fields[4].replace("\\040", " "))
        if fstype != "overlay" or f"lowerdir={base}," not in f"{options},":
            continue
        owner = target.parents[2] / "owner"  # <state>/roots/hN/merged
        try:
            pid = int(owner.read_text())
        except (OSError, ValueError):
            pid = 0
        if not pid or not Path(f"/proc/{pid}").exists():
            subprocess.run(["umount", "-l", str(target)], check=False)
            reaped.append(f"mount {target}")
    return reaped
