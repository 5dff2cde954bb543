"""What the server's request handlers share: config, store, gearman."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from farm_client.gearman_client import Gearman
from farm_server.config import ServerConfig
from farm_server.store import Store


@dataclass
class FarmState:
    config: ServerConfig
    store: Store
    gearman: Gearman


def farm() -> FarmState:
    state: FarmState = current_app.extensions["farm"]
    return state
