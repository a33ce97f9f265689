// Live refresh, the dashboard's only script. Every few seconds it fetches
// the page's own address with ?fragment=1 (the server renders just the
// page's content) and swaps it into <main id="live">. It waits while you
// type in a field or select text there, while the tab is hidden, and
// stops when the server says anything but 200 (a lost auth cookie, say).
// Without JavaScript the dashboard works the same, minus the refresh.
(function () {
  "use strict";
  var main = document.getElementById("live");
  if (!main) return;
  var seconds = parseFloat(main.getAttribute("data-refresh")) || 0;
  var toggle = document.getElementById("live-toggle");
  var state = document.getElementById("live-state");
  var enabled = true;
  try { enabled = window.localStorage.getItem("task_queue.live") !== "off"; } catch (e) { /* storage off */ }
  var inflight = false;
  var stopped = false;

  // Notices (?notice=...) belong to the redirect after an action: keep
  // them out of the address, so reloading does not show them again.
  if (window.history && window.history.replaceState) {
    var here = new URL(window.location.href);
    ["notice", "id", "count"].forEach(function (k) {
      if (k !== "id" || here.searchParams.has("notice")) here.searchParams.delete(k);
    });
    window.history.replaceState(null, "", here.pathname + here.search + here.hash);
  }

  // Forms that ask first (data-confirm): retry all, purge, cancel.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) event.preventDefault();
  });

  function say(text) { if (state) state.textContent = text; }

  function busy() {
    var active = document.activeElement;
    if (active && active !== document.body && main.contains(active) &&
        /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName)) return true;
    var selection = window.getSelection && window.getSelection();
    return Boolean(selection && !selection.isCollapsed && main.contains(selection.anchorNode));
  }

  function refresh() {
    if (!enabled || stopped || inflight || document.hidden || busy()) return;
    var url = new URL(window.location.href);
    url.searchParams.set("fragment", "1");
    inflight = true;
    fetch(url.toString(), { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (response.status !== 200) {
          stopped = true;
          say("refresh stopped: the server answered " + response.status + "; reload the page");
          return null;
        }
        return response.text();
      })
      .then(function (html) {
        if (html === null || busy()) return;
        var open = [];
        main.querySelectorAll("details").forEach(function (d, i) { if (d.open) open.push(i); });
        main.innerHTML = html;
        var details = main.querySelectorAll("details");
        open.forEach(function (i) { if (details[i]) details[i].open = true; });
        say("updated " + new Date().toLocaleTimeString());
      })
      .catch(function () { say("refresh failed; retrying"); })
      .then(function () { inflight = false; });
  }

  function show() {
    if (!toggle) return;
    toggle.hidden = false;
    toggle.textContent = enabled ? "live: on" : "live: off";
    toggle.setAttribute("aria-pressed", enabled ? "true" : "false");
  }

  if (seconds > 0) {
    show();
    if (toggle) {
      toggle.addEventListener("click", function () {
        enabled = !enabled;
        try { window.localStorage.setItem("task_queue.live", enabled ? "on" : "off"); } catch (e) { /* storage off */ }
        show();
        say("");
        if (enabled) refresh();
      });
    }
    window.setInterval(refresh, seconds * 1000);
  }
})();
