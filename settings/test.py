"""Settings for the test suite. Server tests pass REDIS_URL to the processes they start."""

from .base import *  # noqa: F403

DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
SILENCED_SYSTEM_CHECKS = ["pushgateway.W001"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
