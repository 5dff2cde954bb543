"""site.yml on real systemd hosts: converge, a second run changes nothing, the services
and files are as the roles say, and a job goes through the module."""

from __future__ import annotations

import pytest

from harness.deployment import DeployedFarm, changed_counts

pytestmark = [pytest.mark.deployment, pytest.mark.slow]


def test_a_second_run_changes_nothing(deployed: DeployedFarm) -> None:
    out = deployed.playbook("site.yml").stdout
    assert changed_counts(out) == {"h1": 0, "h2": 0, "h3": 0}, out[-4000:]
