"""refstack-farm client: the `farm` CLI, the client library and the status server."""

__version__ = "0.1.0"
