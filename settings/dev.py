"""The embedded default: DEBUG, SQLite unless DATABASE_URL is set, in-memory channel layer
unless REDIS_URL is set."""

from .base import *  # noqa: F403

DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
