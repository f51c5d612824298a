"""Requests as a GRIP proxy (Pushpin, Fastly Fanout) signs them, for the tests of the view."""

import time

import jwt

KEY = "grip-test-key-that-is-long-enough-for-hs256"
GRIP = {
    "BACKEND": "pushgateway.backends.fanout.FanoutBackend",
    "OPTIONS": {"GRIP_URL": f"http://127.0.0.1:1?key={KEY}&verify-iss=pushpin"},
}


def sig(key=KEY, iss="pushpin", exp=60):
    """A Grip-Sig as the proxy makes it (a forgery with another key or issuer)."""
    return jwt.encode({"iss": iss, "exp": int(time.time()) + exp}, key, algorithm="HS256")
