// The lead board's only script (served by the board; the CSP allows no other): hot leads
// pushed by the server (GET /live, server-sent events) are added to the "Just now" list.
"use strict";

(function () {
  const list = document.getElementById("live");
  const status = document.getElementById("live-status");
  if (!list || !status || !window.EventSource) {
    return;
  }
  const source = new EventSource("/live");
  source.addEventListener("open", function () {
    status.textContent = "Live: connected.";
    list.dataset.connected = "yes";
  });
  source.addEventListener("error", function () {
    status.textContent = "Live: reconnecting…";
    list.dataset.connected = "no";
  });
  source.addEventListener("hot", function (event) {
    const lead = JSON.parse(event.data);
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = "/contacts/" + encodeURIComponent(lead.contact_id);
    link.textContent = lead.contact_id;
    const detail = " — score " + lead.score + " (" + lead.model + "), " + lead.stage +
      (lead.reasons.length ? ": " + lead.reasons.join(", ") : "");
    item.append(link, document.createTextNode(detail));
    list.prepend(item);
    while (list.children.length > 50) {
      list.lastElementChild.remove();
    }
  });
})();
