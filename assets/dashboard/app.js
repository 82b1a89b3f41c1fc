// Swarmwise dashboards: the live insights widget. Progressive enhancement:
// every page works without this script. The overview's #insights element
// names a partial (data-src) and an event stream (data-events, the
// session's workspace only); when a learning cycle finishes or trust
// changes, the widget is fetched again and replaced.
(function () {
  "use strict";
  var box = document.getElementById("insights");
  if (!box || !window.EventSource || !window.fetch) return;
  var src = box.getAttribute("data-src");
  var events = box.getAttribute("data-events");
  if (!src || !events) return;
  var busy = false;
  var again = false;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(src, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html !== null) {
          box.innerHTML = html;
          box.setAttribute("data-updated", String(Date.now()));
        }
      }, function () {})
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }
  var stream = new EventSource(events);
  // Tests (and curious operators) can see that the widget is live.
  stream.onopen = function () { box.setAttribute("data-live", "open"); };
  stream.onerror = function () { box.setAttribute("data-live", "reconnecting"); };
  stream.onmessage = function (e) {
    var ev;
    try { ev = JSON.parse(e.data); } catch (_) { return; }
    // A reset means events may have been missed: re-read the widget.
    if (ev && (ev.type === "learning_cycle" || ev.type === "trust_updated" || ev.type === "reset")) refresh();
  };
  // Leaving the page closes the stream quietly.
  window.addEventListener("pagehide", function () { stream.close(); });
})();
