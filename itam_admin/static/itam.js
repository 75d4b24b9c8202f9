// Integrations tab behaviour: custom-credential fields follow their checkbox, and export progress refreshes
// itself. Loaded as a file so the page works under a strict Content-Security-Policy; the page works without it.
(function () {
  "use strict";

  function followCheckbox(container) {
    var box = document.getElementById(container.getAttribute("data-enabled-by"));
    if (!box) return;
    function sync() {
      container.querySelectorAll("input").forEach(function (input) {
        input.disabled = !box.checked;
      });
      container.classList.toggle("disabled", !box.checked);
    }
    box.addEventListener("change", sync);
    sync();
  }

  function text(value) {
    return value === null || value === undefined ? "" : String(value);
  }

  // The same words as _exports.html renders, so a refreshed row reads as the page would after a reload.
  function progressText(counts, queued) {
    var done = (counts.sent || 0) + (counts.failed || 0) + (counts.unchanged || 0);
    if (done === 0) {
      return text(counts.total) + " records, " + (queued ? "waiting for a worker" : "not started yet");
    }
    return text(counts.sent) + " sent, " + text(counts.unchanged) + " unchanged of " + text(counts.total) +
      (counts.failed ? ", " + counts.failed + " failed" : "");
  }

  function updateProgress(region, run) {
    var queued = run.status === "queued";
    Object.keys(run.data_types || {}).forEach(function (type) {
      var counts = run.data_types[type];
      var row = region.querySelector('[data-type="' + type + '"]');
      if (!row) return;
      var bar = row.querySelector("progress");
      if (bar) {
        bar.max = Math.max(counts.total || 0, 1);
        bar.value = (counts.sent || 0) + (counts.failed || 0) + (counts.unchanged || 0);
      }
      var label = row.querySelector(".progress-text");
      if (label) label.textContent = progressText(counts, queued);
    });
    var status = region.querySelector(".run-status");
    if (status) status.textContent = run.status;
    var state = region.querySelector(".run-state");
    if (state) state.textContent = queued ? "Queued, waiting for a worker" : "Running";
    document.querySelectorAll("[data-run-status-word]").forEach(function (word) {
      word.textContent = run.status;
    });
  }

  function pollStatus(region) {
    var url = region.getAttribute("data-status-url");
    var timer = null;
    function tick() {
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (status) {
          if (!status) return;
          if (status.current) {
            updateProgress(region, status.current);
            timer = window.setTimeout(tick, 1500);
          } else {
            // The run finished: reload once so Last completed export shows its outcome.
            window.location.reload();
          }
        })
        .catch(function () { timer = window.setTimeout(tick, 5000); });
    }
    timer = window.setTimeout(tick, 1000);
    window.addEventListener("beforeunload", function () { if (timer) window.clearTimeout(timer); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-enabled-by]").forEach(followCheckbox);
    document.querySelectorAll("[data-status-url]").forEach(pollStatus);
    document.querySelectorAll(".no-js-only").forEach(function (node) {
      node.hidden = true;
    });
  });
})();
