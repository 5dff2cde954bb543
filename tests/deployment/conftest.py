"""A farm deployed with playbooks/site.yml on real systemd hosts (systemd-nspawn -b, one
network namespace each): h1 runs gearmand and the status server, h2 and h3 are workers.
Packages reach the hosts from a package index of the test session (the project's wheels,
their dependencies and Tempest's locked wheels), bridged into the hosts' network; apt goes
to this machine's Debian mirror through socat. Everything is torn down at the end."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from farm_lab.keystone import Keystone
from farm_lab.keystone import up as keystone_up
from farm_worker.environments import PrepareResult
from harness.deployment import DeployedFarm, wheelhouse
from harness.nspawn import Hosts, missing_tools
from harness.pypi import LocalIndex
from harness.refstack import RefStack
from harness.refstack import down as refstack_down
from harness.refstack import up as refstack_up

INDEX_PORT = 8081  # on the bridge address, inside the hosts' network
KEYSTONE_PORT = 5000  # likewise
REFSTACK_PORT = 8000  # likewise


@pytest.fixture(scope="module")  # one deployment per module: hosts go when it ends
def deployed(tmp_path_factory: pytest.TempPathFactory, farm_cache: Path,
             tempest47: PrepareResult) -> Iterator[DeployedFarm]:
    if missing_tools() or os.geteuid() != 0:
        pytest.fail(f"the deployment tests need root and {', '.join(missing_tools())} "
                    "(apt-get install systemd-container debootstrap socat zstd "
                    "openssh-client)")
    state = tmp_path_factory.mktemp("nspawn")
    hosts = Hosts(state, farm_cache / "nspawn")
    index = LocalIndex()
    try:
        refstack_key = state / "refstack_rsa"
        subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f",
                        str(refstack_key)], check=True)
        worker_wheel, client_wheel, server_wheel, deps = wheelhouse(farm_cache,
                                                                    state / "wheels")
        uploaded = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
        index.add(deps, uploaded).add(state / "wheels", uploaded)
        index.add(Path(tempest47.wheelhouse), uploaded)
        index.start()
        hosts.up(3)
        hosts.bridge("pypi", INDEX_PORT, index.url.split("//")[1].split("/")[0])
        index_url = f"http://{hosts.bridge_ip}:{INDEX_PORT}/simple"
        variables: dict[str, Any] = {
            "gearmand_listen_address": hosts.ip("h1"),
            "farm_worker_package_files": [str(worker_wheel)],
            "farm_worker_index_url": index_url,
            "farm_worker_callback_url": f"http://{hosts.ip('h1')}:8080/",
            "farm_worker_tempest_versions": ["47.0.0"],
            # the busy-worker runs reach a cloud that never answers, on purpose: Tempest
            # must be running when the worker is drained, not stopped by the preflight
            "farm_worker_preflight": False,
            "farm_worker_metrics_port": 9731,
            "farm_server_package_files": [str(w) for w in (worker_wheel, client_wheel,
                                                           server_wheel)],
            "farm_server_index_url": index_url,
            "farm_server_users": ["operator"],
            "farm_server_metrics_allow": ["127.0.0.1/32"],  # scraped from h1 itself
            "farm_server_refstack_key": str(refstack_key),
        }
        groups = {"gearman": ["h1"], "farm_servers": ["h1"], "workers": ["h2", "h3"]}
        farm = DeployedFarm(hosts, hosts.inventory(groups, variables), groups, variables)
        farm.first_run = farm.playbook("site.yml").stdout  # type: ignore[attr-defined]
        yield farm
    finally:
        hosts.down()
        index.stop()


@pytest.fixture(scope="module")
def cloud(deployed: DeployedFarm, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Keystone]:
    """A real Keystone the workers reach inside their namespaces: it listens on this
    machine's loopback, is bridged to bridge_ip:5000, and its catalog announces that."""
    hosts = deployed.hosts
    ks = keystone_up(tmp_path_factory.mktemp("cloud"),
                     public=f"http://{hosts.bridge_ip}:{KEYSTONE_PORT}")
    try:
        hosts.bridge("keystone", KEYSTONE_PORT, f"127.0.0.1:{ks.port}")
        yield ks
    finally:
        ks.stop()


@pytest.fixture(scope="module")
def refstack(deployed: DeployedFarm, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[RefStack]:
    """The real RefStack server on this machine's loopback, bridged to
    bridge_ip:REFSTACK_PORT for the hosts."""
    rs = refstack_up(tmp_path_factory.mktemp("refstack"))
    try:
        deployed.hosts.bridge("refstack", REFSTACK_PORT, f"127.0.0.1:{rs.port}")
        yield rs
    finally:
        refstack_down(rs)
