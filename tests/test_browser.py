"""End to end in headless Chromium: a comment posted in one page appears in another."""

import uuid

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.servers]


@pytest.fixture(params=["in-memory layer", "redis layer", "fanout via pushpin"])
def server(request, start_daphne):
    """The demo as a browser reaches it: daphne itself, or a real Pushpin in front of it."""
    if request.param == "redis layer":
        return start_daphne(request.getfixturevalue("redis").url)
    if request.param == "fanout via pushpin":
        return request.getfixturevalue("pushpin_in_front")()
    return start_daphne()


def expect_connected(page):
    expect(page.locator("#push-state")).to_have_attribute("data-state", "connected")


def test_comment_posted_in_one_page_appears_in_the_other(browser, server):
    poster = browser.new_page()
    poster.goto(server.url + "/")
    poster.fill("#id_title", "Browser test")
    poster.click("button[type=submit]")
    expect(poster.locator("h1")).to_have_text("Browser test")
    expect_connected(poster)

    watcher = browser.new_page()
    watcher.goto(poster.url)
    expect_connected(watcher)
    # Mark the document (a reload would lose the mark) and record what the page is told.
    watcher.evaluate(
        """() => {
            window.mark = "same document";
            window.heard = [];
            const channel = document.querySelector("#comments").dataset.channel;
            PushGateway.subscribe(channel, (event) => window.heard.push(event));
        }"""
    )

    poster.fill("#id_author", "Grace")
    poster.fill("#id_body", "Pushed, not polled")
    poster.click("button[type=submit]")

    comment = watcher.locator("#comments li")
    expect(comment).to_have_count(1)
    expect(comment).to_contain_text("Grace")
    expect(comment).to_contain_text("Pushed, not polled")
    assert watcher.evaluate("window.mark") == "same document"
    heard = watcher.evaluate("window.heard")
    assert [(e["reason"], e["data"]["model"], e["data"]["action"]) for e in heard] == [
        ("message", "demo.comment", "created")
    ]
    poster.close()
    watcher.close()


def test_event_list_updates_its_comment_count(browser, server):
    title = f"Counted {uuid.uuid4().hex[:8]}"  # the database is shared by the suite
    page = browser.new_page()
    page.goto(server.url + "/")
    page.fill("#id_title", title)
    page.click("button[type=submit]")
    event_url = page.url

    listing = browser.new_page()
    listing.goto(server.url + "/")
    expect_connected(listing)
    row = listing.locator("#events li", has_text=title)
    expect(row).to_contain_text("0 comments")

    page.goto(event_url)
    page.fill("#id_author", "Ada")
    page.fill("#id_body", "One")
    page.click("button[type=submit]")
    expect(row).to_contain_text("1 comment")
    page.close()
    listing.close()
