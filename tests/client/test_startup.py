"""`farm` loads only what a command needs (the CPU figures: bench/startup.py). Checked by
the modules a fresh interpreter holds, not by a clock."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("requests", "rich", "jinja2", "jsonschema", "gear", "cryptography", "subunit",
         "yaml", "farm_client.via_server", "farm_client.console")

PROBE = """
import json, sys
from farm_client.cli import build_parser
build_parser()
held = {"help": sorted(m for m in HEAVY if m in sys.modules)}
from farm_client.config import ClientConfig
from farm_client.farm import open_farm
from farm_client.gearman_client import Server
open_farm(ClientConfig((Server("127.0.0.1", 1),))).close()
held["direct"] = sorted(m for m in HEAVY if m in sys.modules)
print(json.dumps(held))
"""


@pytest.fixture(scope="module")
def held() -> dict[str, list[str]]:
    out = subprocess.run([sys.executable, "-c", f"HEAVY = {HEAVY!r}\n{PROBE}"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return dict(json.loads(out))


def test_building_every_parser_imports_nothing_heavy(held: dict[str, list[str]]) -> None:
    assert held["help"] == []


def test_straight_to_gearmand_needs_gear_not_http_or_rich(held: dict[str, list[str]]) -> None:
    assert held["direct"] == ["gear"]
