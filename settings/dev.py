"""The embedded default: DEBUG, SQLite unless DATABASE_URL is set, in-memory channel layer
unless REDIS_URL is set."""

from .base import *  # noqa: F403

DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
# One process is the point of the embedded default; the warning says so for other setups.
SILENCED_SYSTEM_CHECKS = ["pushgateway.W001"]
