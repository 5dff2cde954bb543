"""The status server's client raises types: Unreachable (no answer) and Refused (an HTTP
error, with its status and body), both APIError, both FarmClientError."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from farm_client.api import APIError, FarmAPI, Refused, Unreachable
from farm_client.exceptions import FarmClientError
from farm_lab.loopback import free_port
from harness.recorder import Recorder


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    r = Recorder().start()
    try:
        yield r
    finally:
        r.stop()


def test_no_server_is_unreachable() -> None:
    api = FarmAPI(f"http://127.0.0.1:{free_port()}/", None, timeout_s=5)
    with pytest.raises(Unreachable) as caught:
        api.test("t1")
    assert caught.value.status is None and isinstance(caught.value, APIError | FarmClientError)


def test_an_http_error_is_refused_with_its_status_and_body(recorder: Recorder) -> None:
    api = FarmAPI(recorder.url, "tok")
    with pytest.raises(Refused) as caught:
        api.test("t1")  # the recorder answers 404 to what it does not know
    assert caught.value.status == 404 and not isinstance(caught.value, Unreachable)
    assert caught.value.body["error"].startswith("nothing at /v1/tests/t1")
