// Keeps the inbox fresh without a reload: fetch the list every few seconds and swap it
// in, unless the person is in the middle of something inside it.
(function () {
  "use strict";
  var box = document.getElementById("inbox");
  if (!box) { return; }
  var url = box.getAttribute("data-refresh");
  var every = parseInt(box.getAttribute("data-interval"), 10) || 2000;
  var busy = false;

  function refresh() {
    if (busy || document.hidden || box.contains(document.activeElement)) { return; }
    busy = true;
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (response.status === 401) { window.location.assign("/console/login"); return null; }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html !== null && html !== box.innerHTML) { box.innerHTML = html; }
      })
      .catch(function () { /* offline for a moment: try again next tick */ })
      .then(function () { busy = false; });
  }
  window.setInterval(refresh, every);
  document.addEventListener("visibilitychange", refresh);
})();
