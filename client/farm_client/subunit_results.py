"""An uploaded subunit v2 stream, parsed strictly by the worker's own collector.

Unlike the worker's live parsing, bytes that are not subunit are an error here: a body
that is not a whole subunit stream is refused, so nothing half-understood is stored.
"""

from __future__ import annotations

import io

from farm_client.exceptions import FarmClientError
from farm_worker.results import Collector, TestOutcome, consume

__all__ = ["Collector", "NotSubunit", "TestOutcome", "parse"]


class NotSubunit(FarmClientError, ValueError):
    """The bytes are not a (non-empty, well-formed) subunit v2 stream."""


def parse(data: bytes) -> Collector:
    """Parse a whole stream; NotSubunit when it is empty, not subunit, or damaged."""
    if not data:
        raise NotSubunit("the file is empty")
    collector = Collector()
    try:
        consume(io.BytesIO(data), collector, non_subunit_name=None)
    except Exception as exc:  # python-subunit raises a bare Exception on non-subunit bytes
        raise NotSubunit(f"not a subunit v2 stream ({str(exc)[:80]})") from None
    if collector.parse_error:
        raise NotSubunit(f"damaged subunit stream: {collector.parse_error[:200]}")
    if not collector.tests:
        raise NotSubunit("the stream holds no test result")
    return collector
