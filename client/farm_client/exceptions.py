"""The client's exceptions, under one base."""


class FarmClientError(Exception):
    """Base of every error farm_client raises on purpose."""
