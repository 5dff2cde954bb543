"""The status server (the RefStack side): `create_app()` builds the Flask application."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from farm_client.gearman_client import Gearman
from farm_server import dashboard
from farm_server.api import health, refstack, v1
from farm_server.config import ServerConfig, load_server_config
from farm_server.exceptions import FarmServerError
from farm_server.schemas import FieldError
from farm_server.state import FarmState
from farm_server.store import Store

log = logging.getLogger(__name__)


class SchemaNotReady(FarmServerError):
    """The database has not been created or upgraded: run `farm-server init-db`."""


def create_app(config: ServerConfig | Mapping[str, Any] | None = None, *,
               store: Store | None = None, gearman: Gearman | None = None) -> Flask:
    """The Flask app; `config` is a ServerConfig, or overrides of the loaded server.yaml."""
    cfg = config if isinstance(config, ServerConfig) else load_server_config(
        overrides=config or {})
    store = store or Store(cfg.database_url)
    head = store.head()
    if store.revision() != head:
        raise SchemaNotReady(f"{cfg.database_url}: schema revision {store.revision()}, "
                             f"expected {head}: run `farm-server init-db`")
    app = Flask("farm_server")
    # no automatic OPTIONS: an unknown host gets 405 for every method of the RefStack
    # endpoints (the dashboard's pages are same-origin: no preflight)
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    app.config["MAX_CONTENT_LENGTH"] = cfg.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["farm"] = FarmState(cfg, store, gearman or Gearman(cfg.gearman_servers))
    @app.get("/healthz")
    def healthz() -> Response:
        """For load balancers and probes: the process answers (no database access)."""
        return jsonify({"ok": True})

    app.register_blueprint(health.bp)
    app.register_blueprint(refstack.bp)
    app.register_blueprint(v1.bp, url_prefix="/v1")
    app.register_blueprint(dashboard.bp)

    @app.errorhandler(FieldError)
    def bad_request(exc: FieldError) -> tuple[Response, int]:
        """A body or query that is not valid by its schema: 400 naming the field."""
        return jsonify(exc.answer()), 400

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        code = exc.code or 500
        message = exc.description or exc.name
        if code == 413:
            message = f"request body larger than {cfg.max_body_bytes} bytes"
        return jsonify({"error": message}), code

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unexpected error")
        return jsonify({"error": f"internal error: {exc.__class__.__name__}"}), 500

    return app
