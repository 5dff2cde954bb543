"""refstack-farm client: the `farm` CLI and the client library (`Farm`)."""

__version__ = "0.1.0"
