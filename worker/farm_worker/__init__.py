"""refstack-farm worker: runs pinned Tempest versions for gearman jobs."""

__version__ = "0.1.0"
