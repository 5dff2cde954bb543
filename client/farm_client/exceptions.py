"""The client's exceptions, under one base: callers (the CLI, the Ansible module) catch
these types, never match texts."""

from farm_worker.protocol import run_function, show


class FarmClientError(Exception):
    """Base of every error farm_client raises on purpose."""


class NoSuchTest(FarmClientError):
    """The status server has no test of that id."""

    def __init__(self, test_id: str) -> None:
        super().__init__(f"no test {show(test_id)}")
        self.test_id = test_id


class NotRegistered(FarmClientError):
    """No worker serves the requested Tempest version."""

    def __init__(self, version: str, registered: list[str]) -> None:
        super().__init__(f"no worker serves {run_function(version)}; registered versions: "
                         + (", ".join(registered) or "none")
                         + " (--queue-anyway queues it regardless)")
        self.version, self.registered = version, registered


class Duplicate(FarmClientError):
    """The test id is taken: the farm runs a test id once."""


class NeedsServer(FarmClientError):
    """Only the status server knows this (set FARM_SERVER_URL)."""
