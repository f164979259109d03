// Polls the import's status every second; reloads the page to show the report when it has finished.
(function () {
  "use strict";
  const root = document.querySelector(".recipient-import");
  if (!root) return;
  const url = root.dataset.statusUrl;
  const bar = document.getElementById("import-progress");
  const rows = document.getElementById("import-rows");
  const status = document.getElementById("import-status");

  function poll() {
    fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) {
        if (!response.ok) throw new Error("status " + response.status);
        return response.json();
      })
      .then(function (data) {
        if (data.finished) { window.location.reload(); return; }
        bar.value = data.percent;
        bar.textContent = data.percent + "%";
        status.textContent = data.status_display;
        rows.textContent = data.progress_line;  // worded (and its figures written) by the server
        window.setTimeout(poll, 1000);
      })
      .catch(function () { window.setTimeout(poll, 2000); });
  }
  window.setTimeout(poll, 500);
})();
