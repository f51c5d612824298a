"""Ordinary Django views: none of them publishes by hand; register() in models.py does.

Each page view calls pushgateway.watch() before it queries what it shows: the positions read
then go into the page, so a comment saved between this render and the page's subscription
still reaches it.
"""

from django.db.models import Count
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET

import pushgateway

from .forms import CommentForm, EventForm
from .models import Event


def _events():
    return Event.objects.annotate(comment_count=Count("comments"))


def event_list(request):
    pushgateway.watch(request, "events")
    form = EventForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        event = form.save()
        return redirect(event)
    return render(request, "demo/event_list.html", {"events": _events(), "form": form})


@require_GET
def event_list_json(request):
    events = [
        {"id": e.pk, "title": e.title, "url": e.get_absolute_url(), "comments": e.comment_count}
        for e in _events()
    ]
    return JsonResponse({"events": events})


def event_detail(request, pk):
    pushgateway.watch(request, f"comments-{pk}")
    event = get_object_or_404(Event, pk=pk)
    form = CommentForm(request.POST or None)
    if request.method == "POST":
        wants_json = "application/json" in request.headers.get("Accept", "")
        if form.is_valid():
            form.instance.event = event
            comment = form.save()
            if wants_json:  # posted by the page's own fetch(): it shows the comment itself
                return JsonResponse(comment.as_json(), status=201)
            return redirect(event)
        if wants_json:
            return JsonResponse({"errors": form.errors}, status=400)
    return render(request, "demo/event_detail.html", {"event": event, "form": form})


@require_GET
def comments_json(request, pk):
    event = get_object_or_404(Event, pk=pk)
    return JsonResponse({"comments": [c.as_json() for c in event.comments.all()]})


def _live_comments(request, pk):
    """What the comments fragment shows, its channel watched first."""
    channel = f"comments-{pk}"
    pushgateway.watch(request, channel)
    event = get_object_or_404(Event, pk=pk)
    return {"event": event, "channel": channel, "comments": event.comments.all()}


def event_live(request, pk):
    """The event without a script of its own: its comments are an htmx fragment that
    refetches itself when its channel changes ({% pushgateway_fragment %})."""
    context = _live_comments(request, pk)
    form = CommentForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        form.instance.event = context["event"]
        form.save()
        return redirect("event_live", pk)
    return render(request, "demo/event_live.html", {**context, "form": form})


@require_GET
def event_comments(request, pk):
    """The comments fragment alone: what the page's htmx fetches."""
    return render(request, "demo/comments_fragment.html", _live_comments(request, pk))
