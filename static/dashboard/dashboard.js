// Keeps the dashboard live: every few seconds, each panel's HTML is fetched from
// its fragment URL (data-url) and swapped in. No page reload; no other script.
(function () {
  "use strict";
  var root = document.querySelector("[data-refresh-seconds]");
  if (!root) { return; }
  var every = Math.max(1, parseInt(root.getAttribute("data-refresh-seconds"), 10) || 5) * 1000;
  var status = document.getElementById("pb-live-status");

  function say(text, stale) {
    if (!status) { return; }
    status.textContent = text;
    status.classList.toggle("pb-stale", !!stale);
  }

  function refresh(panel) {
    return fetch(panel.getAttribute("data-url"), {
      credentials: "same-origin",
      cache: "no-store",
      headers: { "X-Requested-With": "XMLHttpRequest" },
    }).then(function (response) {
      // A redirect means the session ended (the admin sends us to its sign-in page).
      if (response.redirected || !response.ok) {
        throw new Error(response.redirected ? "signed out: reload to sign in" : "HTTP " + response.status);
      }
      return response.text();
    }).then(function (html) {
      if (panel.innerHTML !== html) { panel.innerHTML = html; }
    });
  }

  function tick() {
    var panels = Array.prototype.slice.call(document.querySelectorAll("[data-panel][data-url]"));
    Promise.all(panels.map(refresh)).then(function () {
      say("live, updated " + new Date().toLocaleTimeString());
      root.setAttribute("data-refreshed", String(Date.now()));
      window.setTimeout(tick, every);
    }, function (error) {
      say("not updating (" + error.message + ")", true);
      if (!/signed out/.test(error.message)) { window.setTimeout(tick, every * 3); }
    });
  }

  window.setTimeout(tick, every);
})();
