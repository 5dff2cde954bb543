"""The status server's errors: each is a sentence for the operator, naming what is wrong."""


class FarmServerError(Exception):
    """A configuration, store or upload problem; `farm-server` prints it and exits 2."""
