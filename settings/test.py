"""Settings for the test suite. Server tests pass REDIS_URL to the processes they start.

The suite's own databases, whatever DATABASE_URL says: SQLite as "default" and PostgreSQL as
"postgres", on the server TEST_POSTGRES_URL names. Test runs create their database there under
a name of their own, so runs at the same time on one server do not collide, and drop it after.
"""

import os
import uuid

import dj_database_url

from .base import *  # noqa: F403
from .base import BASE_DIR

DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")

DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"},
    "postgres": dj_database_url.parse(
        POSTGRES_URL, test_options={"NAME": f"test_pushgateway_{uuid.uuid4().hex[:12]}"}
    ),
}
