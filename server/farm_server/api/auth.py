"""Who is calling: a known testing host (worker token + allowed networks) or a user.

Tokens travel as `Authorization: Bearer <token>` and are stored hashed. A caller that is
not a known testing host gets 405, as the RefStack contract says; a missing or unknown
user token gets 401.
"""

from __future__ import annotations

import ipaddress
import json
import logging

from flask import abort, current_app, jsonify, request

from farm_server.models import WorkerRow
from farm_server.state import farm

log = logging.getLogger(__name__)


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _deny(code: int, message: str) -> None:
    response = jsonify({"error": message})
    response.status_code = code
    abort(response)


def require_worker() -> WorkerRow:
    """The calling testing host, or 405 (no token, unknown token, or outside its networks)."""
    token = _bearer()
    worker = farm().store.worker_for(token) if token else None
    if worker is None:
        _deny(405, "not a known testing host: a worker token is required")
    assert worker is not None
    allowed = json.loads(worker.allow_json or "[]")
    if allowed and not address_in(request.remote_addr or "", allowed):
        log.warning("worker %s called from %s, outside %s", worker.name, request.remote_addr,
                    allowed)
        _deny(405, f"not a known testing host: {request.remote_addr} is not allowed for "
                   f"{worker.name}")
    return worker


def address_in(address: str, networks: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net, strict=False) for net in networks)


def require_user(write: bool = False) -> str | None:
    """The calling user's name; reads may be open (config open_reads)."""
    token = _bearer()
    user = farm().store.user_for(token) if token else None
    if user is not None:
        return user.name
    if not write and current_app.extensions["farm"].config.open_reads:
        return None
    if token:
        _deny(401, "the user token was not accepted (unknown or revoked; "
                   "farm-server add-user NAME makes one)")
    _deny(401, "a user token is required (Authorization: Bearer <token>; "
               "farm-server add-user NAME makes one)")
    return None
