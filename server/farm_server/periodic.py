"""A pass that runs every N seconds in `farm-server monitor` until stopped (the monitor, the
uploader): a failing pass is logged and the next one runs."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class Periodic:
    name = "periodic"

    def __init__(self) -> None:
        self._stop = threading.Event()

    def run_once(self) -> list[str]:
        raise NotImplementedError

    def run_forever(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.run_once()
            except Exception:
                log.exception("%s pass failed", self.name)

    def start(self, interval_s: float) -> threading.Thread:
        thread = threading.Thread(target=self.run_forever, args=(interval_s,), daemon=True,
                                  name=f"farm-{self.name}")
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()
