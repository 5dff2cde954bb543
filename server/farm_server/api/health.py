"""For the operators' monitoring: `/metrics` (Prometheus) and the health probes.

`/health/live`: the process answers (nothing else is asked). `/health/ready`: the
database answers with the expected schema and at least one gearmand answers; 503 when
not, with what was checked and what failed. Neither needs a token (probes and load
balancers have none) and neither says more than "ok" or why not. `/metrics` needs a user
token, or a caller inside `metrics_allow` (the Prometheus hosts).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from farm_client.gearman_client import GearmanError
from farm_server import metrics
from farm_server.api.auth import address_in, require_user
from farm_server.state import farm

bp = Blueprint("health", __name__)
GEARMAND_TIMEOUT_S = 2.0  # a readiness probe is answered within a few seconds


@bp.get("/health/live")
def live() -> Response:
    return jsonify({"ok": True, "checked": {"process": "ok"}})


@bp.get("/health/ready")
def ready() -> tuple[Response, int]:
    state = farm()
    checked: dict[str, Any] = {}
    try:
        revision, head = state.store.revision(), state.store.head()
        checked["database"] = "ok" if revision == head else (
            f"schema revision {revision}, expected {head}: run `farm-server init-db`")
    except Exception as exc:  # any driver's error: the probe says so, it does not fail
        checked["database"] = f"{exc.__class__.__name__}: {str(exc)[:200]}"
    gearmands: dict[str, str] = {}
    for server in state.gearman.servers:
        try:
            state.gearman.admin(server, "version", timeout_s=GEARMAND_TIMEOUT_S)
            gearmands[str(server)] = "ok"
        except GearmanError as exc:
            gearmands[str(server)] = str(exc)
    checked["gearmand"] = gearmands
    ok = checked["database"] == "ok" and "ok" in gearmands.values()
    return jsonify({"ok": ok, "checked": checked}), 200 if ok else 503


@bp.get("/metrics")
def metrics_text() -> Response:
    allowed = farm().config.metrics_allow
    if not (allowed and address_in(request.remote_addr or "", list(allowed))):
        require_user()
    return Response(metrics.exposition(farm().store.active_counts),
                    content_type=metrics.CONTENT_TYPE)
