"""The positions view: where several channels are, in one small request.

The browser module asks it while it has no socket (instead of refetching every page's data
every few seconds, it refetches only what moved) and as a periodic check while it has one.

    POST /pushgateway/positions/
    {"channels": ["comments-7", "events", "private-inbox-3"],
     "tokens": {"private-inbox-3": "TOKEN"}}

    {"positions": {"comments-7": {"epoch": "3f2a…", "seq": 12}, "events": …,
                   "private-inbox-3": …},
     "errors": {}}

A position is null when it cannot be read now (the page refetches to be safe). A `private-`
channel needs its token; without a valid one it is listed under "errors" with the code
"forbidden", like every invalid name.

Tokens travel in the body, never in the URL, which every access log keeps. The older form,
``GET ?c=comments-7&c=private-inbox-3:TOKEN``, is still answered for pages that loaded an
older browser module, and is deprecated: a token in it is logged by every server and proxy on
the way, so the answer says `Deprecation: true` and the process logs a warning once.

The view is exempt from CSRF protection: it changes nothing, and a cookie authorises nothing
here (the tokens in the body do); a page of another site that posts to it cannot read the
answer.
"""

from __future__ import annotations

import json
import logging

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from pushgateway import protocol
from pushgateway.backends import get_backend
from pushgateway.constants import MAX_POSITIONS_BODY_BYTES, MAX_POSITIONS_PER_REQUEST, ErrorCode
from pushgateway.tokens import check_token

logger = logging.getLogger("pushgateway")

#: (channel, token) pairs asked about; the token is "" for none.
Wanted = list[tuple[str, str]]

_warned = False  # about a token in a query string, once per process


def from_body(body: bytes) -> Wanted | str:
    """What a POST asks about, or why its body is not a positions request."""
    if len(body) > MAX_POSITIONS_BODY_BYTES:
        return f"a body of at most {MAX_POSITIONS_BODY_BYTES} bytes"
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return "a body of JSON"
    if not isinstance(data, dict):
        return 'a JSON object {"channels": [...], "tokens": {...}}'
    channels, tokens = data.get("channels"), data.get("tokens", {})
    if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
        return '"channels": a list of channel names'
    if not isinstance(tokens, dict) or not all(isinstance(t, str) for t in tokens.values()):
        return '"tokens": an object of channel names to tokens'
    return [(channel, tokens.get(channel, "")) for channel in channels]


def from_query(request: HttpRequest) -> Wanted:
    """What a GET asks about: `c=NAME`, or (deprecated) `c=NAME:TOKEN`."""
    wanted = [(c, t) for c, _, t in (item.partition(":") for item in request.GET.getlist("c"))]
    global _warned
    if not _warned and any(token for _, token in wanted):
        _warned = True
        logger.warning(
            "pushgateway: a page sent tokens in the positions view's query string, which "
            "access logs keep; it runs an older browser module (the current one POSTs them)"
        )
    return wanted


def bad_request(error: str) -> JsonResponse:
    return JsonResponse({"error": error}, status=400)


@csrf_exempt
@require_http_methods(["GET", "POST"])
async def positions(request: HttpRequest) -> JsonResponse:
    if request.method == "POST":
        wanted = from_body(request.body)
        if isinstance(wanted, str):
            return bad_request(f"expected {wanted}")
    else:
        wanted = from_query(request)
    if len(wanted) > MAX_POSITIONS_PER_REQUEST:
        return bad_request(f"at most {MAX_POSITIONS_PER_REQUEST} channels per request")
    names, errors = [], {}
    for channel, token in wanted:
        if protocol.channel_error(channel):
            errors[channel[:100]] = ErrorCode.INVALID_CHANNEL
        elif protocol.is_private(channel) and not check_token(channel, token):
            errors[channel] = ErrorCode.FORBIDDEN
        else:
            names.append(channel)
    found = await get_backend().aread_positions(names)
    response = JsonResponse(
        {
            "positions": {c: p.as_json() if p is not None else None for c, p in found.items()},
            "errors": errors,
        }
    )
    response["Cache-Control"] = "no-store"
    if request.method == "GET" and any(token for _, token in wanted):
        response["Deprecation"] = "true"
    return response
