"""The HTTP API: `refstack` (the worker-facing RefStack contract: /update-test-status/,
/get-miniconf, /v1/results), `v1` (tests, results, uploads for people and tools), `auth`
(tokens) and `openapi` (the served document)."""
