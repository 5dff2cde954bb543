"""The project's own test harness: real gearmand, Keystone, HTTP recorder, worker processes.

Reused by `make demo`; nothing here imports ../shared.
"""
