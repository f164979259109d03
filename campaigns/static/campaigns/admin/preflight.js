// Polls the preflight's status every second; reloads the page to show the findings when it has finished.
(function () {
  "use strict";
  const root = document.querySelector(".campaign-preflight");
  if (!root || !root.dataset.statusUrl) return;
  const bar = document.getElementById("preflight-progress");
  const rows = document.getElementById("preflight-rows");
  const status = document.getElementById("preflight-status");
  function poll() {
    fetch(root.dataset.statusUrl, {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then((response) => { if (!response.ok) throw new Error(String(response.status)); return response.json(); })
      .then((data) => {
        if (data.finished) { window.location.reload(); return; }
        bar.value = data.percent;
        bar.textContent = data.percent + "%";
        status.textContent = data.status_display;
        rows.textContent = data.rows_done.toLocaleString() + " of " + data.rows_total.toLocaleString() +
          " recipients rendered";
        window.setTimeout(poll, 1000);
      })
      .catch(() => window.setTimeout(poll, 2000));
  }
  window.setTimeout(poll, 500);
})();
