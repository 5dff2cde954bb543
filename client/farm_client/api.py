"""The status server's JSON API v1, as a client (what `farm` uses when a server is set)."""

from __future__ import annotations

from typing import Any

import requests

from farm_client.exceptions import FarmClientError


class APIError(FarmClientError):
    """The status server did not do what was asked: Unreachable or Refused, or its answer
    was not what the API promises."""

    def __init__(self, message: str, status: int | None = None,
                 body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body or {}


class Unreachable(APIError):
    """No answer: connection refused, timed out, TLS failed (`status` is None)."""


class Refused(APIError):
    """An HTTP error answer: `status` and the JSON `body` (`error`, `field`, ...)."""


class FarmAPI:
    def __init__(self, url: str, token: str | None, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/") + "/"
        self.timeout_s = timeout_s
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def __repr__(self) -> str:  # the token stays out of reprs and logs
        return f"FarmAPI({self.url!r})"

    def request(self, method: str, path: str, expect: tuple[int, ...] = (200,),
                **kwargs: Any) -> requests.Response:
        try:
            r = self.session.request(method, self.url + path.lstrip("/"),
                                     timeout=self.timeout_s, **kwargs)
        except requests.RequestException as exc:
            raise Unreachable(f"the status server at {self.url} does not answer "
                              f"({_why(exc, self.timeout_s)})") from None
        if r.status_code == 401 and 401 not in expect:
            raise Refused(f"the status server at {self.url} did not accept the token "
                          "(FARM_TOKEN or --token; farm-server add-user makes one)"
                          if "Authorization" in self.session.headers else
                          f"the status server at {self.url} needs a user token (FARM_TOKEN "
                          "or --token; farm-server add-user makes one)", 401)
        if r.status_code not in expect:
            try:
                body = r.json()
            except ValueError:
                body = {}
            if not isinstance(body, dict):
                body = {}
            message = body.get("error") or r.text.strip()[:200] or r.reason
            raise Refused(f"{method} {path}: {r.status_code} {message}", r.status_code, body)
        return r

    def _json(self, method: str, path: str, expect: tuple[int, ...] = (200,),
              **kwargs: Any) -> dict[str, Any]:
        r = self.request(method, path, expect, **kwargs)
        try:
            doc = r.json()
        except ValueError:
            raise APIError(f"{method} {path}: the answer is not JSON") from None
        if not isinstance(doc, dict):
            raise APIError(f"{method} {path}: the answer is not a JSON object")
        return doc

    def create_test(self, doc: dict[str, Any], queue_anyway: bool = False) -> dict[str, Any]:
        body = {**doc, "queue_anyway": queue_anyway}
        return self._json("POST", "v1/tests", (201,), json=body)["test"]  # type: ignore[no-any-return]

    def test(self, test_id: str) -> dict[str, Any]:
        """{"test": ..., "history": [...]}"""
        return self._json("GET", f"v1/tests/{test_id}")

    def tests(self, states: list[str] | None = None, version: str | None = None,
              limit: int = 50, offset: int = 0, *, guideline: str | None = None,
              target: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        params.update({k: v for k, v in (("guideline", guideline), ("target", target)) if v})
        if states:
            params["state"] = ",".join(states)
        if version:
            params["version"] = version
        return self._json("GET", "v1/tests", params=params)

    def cancel(self, test_id: str) -> dict[str, Any]:
        return self._json("POST", f"v1/tests/{test_id}/cancel", (200, 202))

    def results(self, test_id: str) -> dict[str, Any]:
        return self._json("GET", f"v1/tests/{test_id}/results")

    def results_raw(self, test_id: str, fmt: str) -> bytes:
        return self.request("GET", f"v1/tests/{test_id}/results",
                            params={"format": fmt}).content

    def queue(self) -> dict[str, Any]:
        return self._json("GET", "v1/queue")

    def compare(self, a: str, b: str | None, ratio: float, min_delta_s: float
                ) -> dict[str, Any]:
        params: dict[str, Any] = {"a": a, "ratio": ratio, "min_delta_s": min_delta_s}
        if b:
            params["b"] = b
        return self._json("GET", "v1/compare", params=params)

    def refstack_document(self, test_id: str, cpid: str | None = None) -> dict[str, Any]:
        """What RefStack's POST /v1/results gets for the run."""
        return self._json("GET", f"v1/tests/{test_id}/refstack",
                          params={"cpid": cpid} if cpid else {})

    def record_upload(self, test_id: str, record: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", f"v1/tests/{test_id}/uploads", (201,),  # type: ignore[no-any-return]
                          json=record)["upload"]


def _why(exc: requests.RequestException, timeout_s: float) -> str:
    """What went wrong, in a few words: the innermost OS error where there is one."""
    if isinstance(exc, requests.Timeout):
        return f"no answer within {timeout_s:g} s"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS failed: " + str(exc).rsplit(": ", 1)[-1].strip("')\"")[:120]
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, OSError) and cause.strerror and not isinstance(
                cause, requests.RequestException):
            return cause.strerror.lower()
        cause = cause.__cause__ or cause.__context__
    text = str(exc)
    if "Name or service not known" in text or "getaddrinfo failed" in text \
            or "Failed to resolve" in text:
        return "the name does not resolve"
    if "Connection refused" in text:
        return "connection refused"
    return exc.__class__.__name__

