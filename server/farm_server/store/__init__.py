"""The status server's store: every SQL statement of the farm is in this package, one
module per concept (engine and schema, tokens, tests, results, uploads to RefStack);
`Store` is all of them over one engine."""

from __future__ import annotations

from farm_server.store.engine import StoreBase, StoreError, as_utc
from farm_server.store.pages import Pages, RunsFilter
from farm_server.store.results import Results
from farm_server.store.tests import Applied, Tests
from farm_server.store.tokens import Tokens, hash_token, new_token
from farm_server.store.uploads import Uploads

__all__ = ["Applied", "RunsFilter", "Store", "StoreBase", "StoreError", "as_utc",
           "hash_token", "new_token"]


class Store(Tokens, Tests, Results, Uploads, Pages):
    """The store over one database URL (sqlite:///PATH, postgresql+psycopg://...)."""
