"""What a page learns when it is rendered: the positions of the channels it watches.

Call :func:`watch` in the view before it queries what it shows. The positions read then are
rendered into the page by ``{% pushgateway_script %}``; the browser module subscribes with
them, so anything published after that moment (even before the socket is open) makes the
page refetch, and nothing published before it does.
"""

from __future__ import annotations

from django.http import HttpRequest

from .backends import get_backend
from .message import validate_channel
from .protocol import Position, is_private
from .tokens import make_token

ATTRIBUTE = "_pushgateway_page"


class Page:
    """The channels a page watches: their positions at render time, and tokens for the
    private ones."""

    def __init__(self) -> None:
        self.positions: dict[str, Position | None] = {}
        self.tokens: dict[str, str] = {}

    def client_config(self) -> dict:
        config = {}
        if self.positions:
            config["positions"] = {
                c: p.as_json() if p is not None else None for c, p in self.positions.items()
            }
        if self.tokens:
            config["tokens"] = self.tokens
        return config


def page_of(request: HttpRequest) -> Page:
    page = getattr(request, ATTRIBUTE, None)
    if page is None:
        page = Page()
        setattr(request, ATTRIBUTE, page)
    return page


def watch(request: HttpRequest, *channels: str) -> dict[str, Position | None]:
    """Read the positions of `channels` now and render them into this request's page.

    Call it before the view queries the data the page shows. A `private-` channel also
    gets its token rendered: call watch() only for channels this user may see. Returns
    the positions (None for one that cannot be read now; the page then refetches once it
    subscribes). Raises InvalidChannelName for a bad name.
    """
    for channel in channels:
        validate_channel(channel)
    positions = get_backend().read_positions(channels)
    page = page_of(request)
    page.positions.update(positions)
    for channel in channels:
        if is_private(channel):
            page.tokens[channel] = make_token(channel)
    return positions
