"""Fixtures for the status server: a private gearmand, a migrated store, the Flask app."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from farm_client.gearman_client import Gearman, Server
from farm_lab.gearmand import Gearmand
from farm_lab.gearmand import running as running_gearmand
from farm_server.app import create_app
from farm_server.config import ServerConfig
from farm_server.store import Store
from harness.refstack import RefStack
from harness.refstack import down as refstack_down
from harness.refstack import up as refstack_up


def json_of(response: TestResponse) -> dict[str, Any]:
    """A JSON object response's body."""
    doc = response.get_json(silent=True)
    assert isinstance(doc, dict), response.data[:200]
    return doc


@pytest.fixture(scope="session")
def refstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RefStack]:
    """The real RefStack server (on MariaDB), serving the interop guidelines of
    tests/data/interop; one per test session (per xdist worker)."""
    rs = refstack_up(tmp_path_factory.mktemp("refstack"))
    try:
        yield rs
    finally:
        refstack_down(rs)


@pytest.fixture
def own_gearmand(tmp_path: Path) -> Iterator[Gearmand]:
    """A gearmand of this test alone: jobs queued here never reach the session's workers."""
    with running_gearmand(tmp_path / "gearmand", queue="builtin") as server:
        yield server


@dataclass
class App:
    app: Flask
    client: FlaskClient
    store: Store
    config: ServerConfig
    worker_token: str
    user_token: str

    def worker(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.worker_token}"}

    def user(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.user_token}"}


def make_app(database_url: str, gearmand: Gearmand, **config: object) -> App:
    cfg = ServerConfig(database_url=database_url,
                       gearman_servers=(Server("127.0.0.1", gearmand.port),),
                       callback_url="http://127.0.0.1:9/", **config)  # type: ignore[arg-type]
    store = Store(database_url)
    store.migrate()
    app = create_app(cfg, store=store, gearman=Gearman(cfg.gearman_servers))
    return App(app, app.test_client(), store, cfg,
               store.add_worker("host-1", ["127.0.0.0/8"]), store.add_user("alice"))


@pytest.fixture
def farm_app(tmp_path: Path, own_gearmand: Gearmand) -> Iterator[App]:
    a = make_app(f"sqlite:///{tmp_path / 'server.db'}", own_gearmand)
    try:
        yield a
    finally:
        a.app.extensions["farm"].gearman.close()
        a.store.engine.dispose()

