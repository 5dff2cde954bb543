"""gear's pure-Python job server in this process: the demo's job server when no gearmand is
installed (production, CI and the tests run Debian's gearmand)."""

from __future__ import annotations

import contextlib
import socket
from typing import Any

import gear

from farm_client.gearman_client import GET_STATUS_UNIQUE, STATUS_RES_UNIQUE, Server


class _NoDelayServer(gear.Server):  # type: ignore[misc]
    """gear.Server with TCP_NODELAY, and the two requests farm_client makes that gear.Server
    lacks: GET_STATUS_UNIQUE and the admin `show unique jobs`."""

    def _registerConnection(self, conn: Any) -> None:
        with contextlib.suppress(OSError):
            conn.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super()._registerConnection(conn)

    def handlePacket(self, packet: gear.Packet) -> None:
        if packet.ptype != GET_STATUS_UNIQUE:
            return super().handlePacket(packet)  # type: ignore[no-any-return]
        unique = bytes(packet.data)
        job = next((j for j in list(self.jobs.values()) if j.unique == unique), None)
        fields = [unique, b"1" if job else b"0", b"1" if job and job.running else b"0",
                  (job.numerator or b"0") if job else b"0",
                  (job.denominator or b"0") if job else b"0", b"0"]
        packet.connection.sendPacket(gear.Packet(gear.constants.RES, STATUS_RES_UNIQUE,
                                                 b"\0".join(fields)))
        return None

    def handleAdminRequest(self, request: Any) -> None:
        if request.command.startswith(b"show unique jobs"):
            uniques = b"".join(bytes(j.unique) + b"\n" for j in list(self.jobs.values())
                               if j.unique)
            request.connection.sendRaw(uniques + b".\n")
            return
        super().handleAdminRequest(request)


class EmbeddedJobServer:
    """gear's pure-Python job server in this process, TCP_NODELAY on every connection: the
    demo's job server when no gearmand is installed. It keeps nothing on disk (a background
    job is lost if it stops) and answers only part of the admin protocol (status, workers,
    cancel job): production runs Debian's gearmand."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = _NoDelayServer(port=port, host=host)
        self.server = Server(host, int(self._server.port))

    def stop(self) -> None:
        self._server.shutdown()
