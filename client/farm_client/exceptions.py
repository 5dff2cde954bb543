"""The client's exceptions, under one base."""

from farm_worker.protocol import show


class FarmClientError(Exception):
    """Base of every error farm_client raises on purpose."""


class NoSuchTest(FarmClientError):
    """The status server has no test of that id."""

    def __init__(self, test_id: str) -> None:
        super().__init__(f"no test {show(test_id)}")
        self.test_id = test_id
