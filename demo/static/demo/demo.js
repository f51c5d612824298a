// The demo's page code: subscribe each live list to its channel and re-fetch it when told.
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
    },
  };

  function live(list) {
    const render = renderers[list.id];
    PushGateway.subscribe(list.dataset.channel, async () => {
      const response = await fetch(list.dataset.source, {headers: {Accept: "application/json"}});
      if (response.ok) render(list, await response.json());
    });
  }

  const badge = document.getElementById("push-state");
  PushGateway.onStateChange((state) => {
    badge.dataset.state = state;
    badge.textContent = "push: " + state;
  });
  document.querySelectorAll("[data-channel]").forEach(live);
})();
