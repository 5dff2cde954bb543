"""Log records about one test carry a `[test <id>]` prefix, so an operator can follow one
run through a worker's log (and the tests can find its lines)."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any


class TestLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """`logger`, with each message prefixed by `[test <test_id>] `."""

    __test__ = False  # not a pytest test class

    def __init__(self, logger: logging.Logger, test_id: str) -> None:
        super().__init__(logger, {"test_id": test_id})
        # the prefix is part of the format string: a % in it must not become a placeholder
        self.prefix = f"[test {test_id.replace('%', '%%')}] "

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) \
            -> tuple[Any, MutableMapping[str, Any]]:
        return self.prefix + str(msg), kwargs
