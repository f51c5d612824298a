"""The positions view: where several channels are, in one small GET.

The browser module asks it while it has no socket (instead of refetching every page's data
every few seconds, it refetches only what moved) and as a periodic check while it has one.

    GET /pushgateway/positions/?c=comments-7&c=events&c=private-inbox-3:TOKEN
    {"positions": {"comments-7": {"epoch": "3f2a…", "seq": 12}, "events": …,
                   "private-inbox-3": …},
     "errors": {}}

A position is null when it cannot be read now (the page refetches to be safe). A
`private-` channel needs its token after a colon (names never hold one); without a valid
token it is listed under "errors" with the code "forbidden", like every invalid name.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from pushgateway import protocol
from pushgateway.backends import get_backend
from pushgateway.constants import MAX_POSITIONS_PER_REQUEST, ErrorCode
from pushgateway.tokens import check_token


@require_GET
async def positions(request: HttpRequest) -> JsonResponse:
    wanted = request.GET.getlist("c")
    if len(wanted) > MAX_POSITIONS_PER_REQUEST:
        return JsonResponse(
            {"error": f"at most {MAX_POSITIONS_PER_REQUEST} channels per request"}, status=400
        )
    names, errors = [], {}
    for item in wanted:
        channel, _, token = item.partition(":")
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
    return response
