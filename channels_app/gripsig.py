"""Grip-Sig: the proof that a request came through the configured GRIP proxy.

The proxy signs every request it forwards with a JWT in the `Grip-Sig` header: Pushpin with
its shared sig_key (HS256), Fastly Fanout with its private key (ES256; RS256 accepted too).
PyJWT and cryptography (the `fanout` extra) are imported only when a request is verified, so
a project without that extra can still include channels_app.urls.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from pushgateway.backends import get_config

logger = logging.getLogger("pushgateway")


def verify_grip_sig(token: str | None) -> bool:
    """Whether `token` is a valid Grip-Sig for the GRIP_URL in PUSHGATEWAY's OPTIONS."""
    grip_url = get_config()["OPTIONS"].get("GRIP_URL")
    if not token or not grip_url:
        return False
    try:
        key, algorithms = verification_key(grip_url)
    except ValueError as exc:  # nothing to verify with: refuse rather than trust
        logger.error("pushgateway: cannot verify Grip-Sig: %s", exc)
        return False
    import jwt

    from pushgateway.backends.grip import grip_config

    issuer = grip_config(grip_url).get("verify_iss")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            options={"require": ["exp"], "verify_iss": bool(issuer)},
            issuer=issuer,
        )
    except jwt.PyJWTError:
        return False
    return bool(claims)


@functools.lru_cache(maxsize=16)
def verification_key(grip_url: str) -> tuple[Any, list[str]]:
    """The key Grip-Sig is verified with and the one algorithm its type allows: HS256 for
    a shared secret (Pushpin's sig_key), ES256 or RS256 for a public key (Fastly Fanout's
    verify-key). Never more than one: a token "signed" with HMAC over a public key, which
    is no secret, must not pass."""
    from pushgateway.backends.grip import grip_config

    grip = grip_config(grip_url)
    key = grip.get("verify_key") or grip.get("key")
    if not key:
        raise ValueError("GRIP_URL has no key= or verify-key= (system check pushgateway.E008)")
    raw = key if isinstance(key, bytes) else key.encode()
    if not raw.lstrip().startswith(b"-----BEGIN"):
        return key, ["HS256"]
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    public = load_pem_public_key(raw)
    if isinstance(public, ec.EllipticCurvePublicKey):
        return public, ["ES256"]
    if isinstance(public, rsa.RSAPublicKey):
        return public, ["RS256"]
    raise ValueError(f"verify-key is a {type(public).__name__}; use an EC or RSA public key")
