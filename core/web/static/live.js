// Live updates of the runs pages from GET /live/runs (server-sent events; see web/live.py).
// Each message carries a row rendered (and escaped) by the server; rows are upserted by id,
// so a message received twice changes nothing. No inline script: the CSP forbids it.
(function () {
  "use strict";
  var MAX_ROWS = 200;

  function rowFrom(html) {
    var body = document.createElement("tbody");
    body.innerHTML = html;
    return body.firstElementChild;
  }

  function upsert(tbody, id, html, prepend) {
    var row = rowFrom(html);
    if (!row) { return false; }
    var old = document.getElementById(id);
    if (old) { old.replaceWith(row); return true; }
    if (prepend === null) { return false; }
    if (prepend) { tbody.insertBefore(row, tbody.firstChild); } else { tbody.appendChild(row); }
    while (tbody.rows.length > MAX_ROWS) { tbody.deleteRow(tbody.rows.length - 1); }
    var empty = tbody.closest(".card") && tbody.closest(".card").querySelector(".empty");
    if (empty) { empty.remove(); }
    row.classList.add("fresh");
    return true;
  }

  function start() {
    var runs = document.querySelector("table[data-live=runs]");
    var events = document.querySelector("table[data-live=events]");
    if (!runs && !events || !window.EventSource) { return; }
    var state = document.getElementById("live-state");
    var source = new EventSource("/live/runs");
    source.addEventListener("open", function () {
      if (state) { state.classList.remove("offline"); state.textContent = "Live: new runs appear here as they happen."; }
    });
    source.addEventListener("error", function () {
      if (state) { state.classList.add("offline"); state.textContent = "Reconnecting to live updates..."; }
    });
    source.addEventListener("run", function (message) {
      if (!runs) { return; }
      var data = JSON.parse(message.data);
      var recipe = runs.getAttribute("data-recipe"), status = runs.getAttribute("data-status");
      var fits = runs.getAttribute("data-first-page") === "yes" &&
        (!recipe || recipe === data.recipe) && (!status || status === data.status);
      upsert(runs.tBodies[0], "run-" + data.id, data.html, fits ? true : null);
    });
    source.addEventListener("event", function (message) {
      if (!events) { return; }
      var data = JSON.parse(message.data);
      var fits = events.getAttribute("data-run") === data.run_id;
      upsert(events.tBodies[0], "event-" + data.id, data.html, fits ? false : null);
    });
    window.addEventListener("pagehide", function () { source.close(); });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
