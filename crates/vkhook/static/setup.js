// Makes the setup progress page live: polls the status, updates the steps, reloads when finished.
// Without JavaScript the page still refreshes itself every two seconds (meta refresh).
(function () {
  var box = document.getElementById("setup");
  if (!box || box.dataset.running !== "true") return;
  var url = box.dataset.statusUrl;
  function tick() {
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (s) {
        if (!s) return setTimeout(tick, 1000);
        s.steps.forEach(function (step) {
          var li = box.querySelector('[data-step="' + step.key + '"]');
          if (!li) return;
          li.className = "step " + step.state;
          li.querySelector(".step-state").textContent = step.label;
        });
        if (s.finished) window.location.reload();
        else setTimeout(tick, 300);
      })
      .catch(function () { setTimeout(tick, 1000); });
  }
  setTimeout(tick, 300);
})();
