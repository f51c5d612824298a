// The demo's page code: subscribe each live list to its channel and re-fetch it when told;
// post comments with fetch (so this tab skips the hint its own comment causes); and list what
// the page was told, so a visitor sees push, resync and poll at work.
(function () {
  "use strict";

  function element(tag, text, className) {
    const node = document.createElement(tag);
    node.textContent = text;
    if (className) node.className = className;
    return node;
  }

  const renderers = {
    comments(list, payload) {
      list.replaceChildren(
        ...payload.comments.map((comment) => {
          const item = document.createElement("li");
          item.append(element("strong", comment.author), " ", element("span", comment.body, "body"));
          return item;
        })
      );
      const last = payload.comments[payload.comments.length - 1];
      return last ? new Date(last.created) : null;
    },
    events(list, payload) {
      if (payload.events.length === 0) return list.replaceChildren(element("li", "No events yet.", "empty"));
      list.replaceChildren(
        ...payload.events.map((event) => {
          const item = document.createElement("li");
          const link = element("a", event.title);
          link.href = event.url;
          const label = event.comments + " comment" + (event.comments === 1 ? "" : "s");
          item.append(link, " ", element("span", label, "count"));
          return item;
        })
      );
      return null;
    },
  };

  const log = document.getElementById("push-log");

  function record(event, saved) {
    if (log.querySelector(".empty")) log.replaceChildren();
    const line = element("li", "");
    const when = new Date().toLocaleTimeString();
    const since = event.reason === "message" && saved ? ` ${Date.now() - saved} ms after the save` : "";
    line.append(element("span", event.reason, "reason"), ` ${event.channel} at ${when}${since}`);
    log.prepend(line);
    while (log.children.length > 8) log.lastChild.remove();
  }

  function live(list) {
    const render = renderers[list.id];
    const refetch = async () => {
      const response = await fetch(list.dataset.source, {headers: {Accept: "application/json"}});
      return response.ok ? render(list, await response.json()) : null;
    };
    PushGateway.subscribe(list.dataset.channel, async (event) => record(event, await refetch()));
    return refetch;
  }

  const badge = document.getElementById("push-state");
  const labels = {
    connected: "push: live",
    connecting: "push: connecting (checking every 5 s)",
    waiting: "push: reconnecting (checking every 5 s)",
    idle: "push: idle",
  };
  PushGateway.onStateChange((state) => {
    badge.dataset.state = state;
    badge.textContent = labels[state];
  });

  const refetches = {};
  document.querySelectorAll("[data-channel]").forEach((list) => (refetches[list.id] = live(list)));

  // Post a comment with the page's own fetch: this tab shows it at once, and skips the hint.
  const form = document.getElementById("comment-form");
  if (form) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const response = await PushGateway.fetch(form.action || location.href, {
        method: "POST",
        body: new FormData(form),
        headers: {Accept: "application/json"},
      });
      if (response.ok) {
        form.reset();
        await refetches.comments();
      }
    });
  }
})();
