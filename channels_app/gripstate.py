"""The state of one connection behind a GRIP proxy, carried by the proxy as one signed value.

Each request of a proxied WebSocket may reach another process, so the view hands the
connection's state to the proxy with `Set-Meta-State` and gets it back as `Meta-State` on the
connection's next request: its subscriptions, the positions it was told, the token of each
private subscription (checked again on every request: an expired or revoked one ends its
subscription), its error count and its subscribe budget. The proxy is not the only one who
can send a `Meta-*` header: Pushpin strips them only on real WebSocket connections, and a
plain HTTP request through an `over_http` route keeps them and is signed (Grip-Sig) all the
same. So the value is signed with SECRET_KEY (django.core.signing, a salt of its own;
SECRET_KEY_FALLBACKS verify too) and names the connection's `Connection-Id`: the view accepts
only state it signed itself for that connection, and a subscription in it passed the token
check when it was made.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from django.core import signing

from pushgateway.constants import (
    MAX_ERRORS,
    MAX_FRAME_BYTES,
    MAX_PROXY_STATE_CHARS,
    MAX_PROXY_SUBSCRIPTIONS,
)
from pushgateway.protocol import Position, channel_error, is_private

#: The header the proxy sends the state back in (the view sets it with `Set-Meta-State`).
STATE_HEADER = "Meta-State"
SALT = "pushgateway.websocket-over-http.state"


class InvalidState(ValueError):
    """A `Meta-State` the view did not sign for this connection, or cannot read."""


@dataclasses.dataclass
class ProxyState:
    """What the view knows of one proxied connection between its requests."""

    #: The connection's channels, each with the position it was last told (None: unknown).
    subscriptions: dict[str, Position | None] = dataclasses.field(default_factory=dict)
    #: Errors (bad input, not refusals) so far.
    errors: int = 0
    #: The subscribe budget when last seen: (tokens, unix time); None on a first request.
    churn: tuple[float, float] | None = None
    #: The token each private subscription was last authorised with (Session.tokens).
    tokens: dict[str, str] = dataclasses.field(default_factory=dict)


def dump_state(state: ProxyState, connection_id: str) -> str:
    """The signed `Set-Meta-State` value of `state` for the connection `connection_id`."""
    payload = {
        "i": connection_id,
        "s": {c: p and [p.epoch, p.seq] for c, p in sorted(state.subscriptions.items())},
        "e": state.errors,
        "b": state.churn and [round(state.churn[0], 3), round(state.churn[1], 3)],
        "t": dict(sorted(state.tokens.items())),
    }
    return signing.dumps(payload, salt=SALT, compress=True)


def load_state(value: str | None, connection_id: str) -> ProxyState:
    """The state in a `Meta-State` value (an empty state when there is none); raises
    InvalidState when it was not signed by this server for `connection_id`."""
    if not value:
        return ProxyState()
    if len(value) > MAX_PROXY_STATE_CHARS:
        raise InvalidState(f"a state of {len(value)} characters")
    try:
        payload = signing.loads(value, salt=SALT)
    except (signing.BadSignature, ValueError, TypeError, UnicodeError, RecursionError) as exc:
        raise InvalidState("a state this server did not sign") from exc
    if not isinstance(payload, dict) or payload.get("i") != connection_id:
        raise InvalidState("a state signed for another connection")
    # Signed by this server, so well-formed; checked all the same, as cheaply as client input.
    subscriptions = _subscriptions(payload.get("s"))
    tokens = _tokens(payload.get("t"), subscriptions)
    return ProxyState(subscriptions, _errors(payload.get("e")), _churn(payload), tokens)


def _subscriptions(value: Any) -> dict[str, Position | None]:
    if not isinstance(value, dict) or len(value) > MAX_PROXY_SUBSCRIPTIONS:
        raise InvalidState("subscriptions that are not a map of at most the proxy's limit")
    subscriptions = {}
    for channel, told in value.items():
        position = None
        if told is not None:
            pair = told if isinstance(told, list) and len(told) == 2 else [None, None]
            position = Position.from_json({"epoch": pair[0], "seq": pair[1]})
            if position is None:
                raise InvalidState(f"a position that is not one: {told!r:.60}")
        if channel_error(channel):
            raise InvalidState(f"a subscription that is not a channel: {channel!r:.60}")
        subscriptions[channel] = position
    return subscriptions


def _errors(value: Any) -> int:
    if type(value) is not int or not 0 <= value <= MAX_ERRORS + 1:
        raise InvalidState(f"an error count that is not one: {value!r:.30}")
    return value


def _churn(payload: dict) -> tuple[float, float] | None:
    value = payload.get("b")
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == 2):
        raise InvalidState("a subscribe budget that is not (tokens, time)")
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in value):
        raise InvalidState("a subscribe budget that is not two finite numbers")
    return float(value[0]), float(value[1])


def _tokens(value: Any, subscriptions: dict[str, Position | None]) -> dict[str, str]:
    # A state signed before tokens travelled in it has none ("t" missing): the view then
    # checks its private subscriptions against no token, which ends them (`forbidden`).
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidState("tokens that are not a map")
    for channel, token in value.items():
        if channel not in subscriptions or not is_private(channel):
            raise InvalidState(f"a token for no private subscription: {channel!r:.60}")
        if not isinstance(token, str) or len(token) > MAX_FRAME_BYTES:
            raise InvalidState(f"a token that is not one: {token!r:.60}")
    return value
