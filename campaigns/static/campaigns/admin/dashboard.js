// Polls the campaign's dashboard.json and updates the figures and chart in place; reloads the page when
// the status changes, so the action buttons always match the campaign's state.
(function () {
  "use strict";
  const root = document.getElementById("campaign-dashboard");
  if (!root) return;
  const every = 1000 * (parseInt(root.dataset.pollSeconds, 10) || 3);
  const show = (id, value) => {
    const el = document.getElementById(id);
    if (el) el.textContent = value === null || value === undefined || value === "" ? "—" : value;
  };
  async function poll() {
    try {
      const response = await fetch(root.dataset.url, {credentials: "same-origin", headers: {Accept: "application/json"}});
      if (!response.ok) return;
      const d = await response.json();
      if (d.status !== root.dataset.status) {
        window.location.reload();
        return;
      }
      ["processed", "total", "sent", "failed", "unknown", "skipped", "pending", "sending", "delivered", "opened",
       "machine_opened", "clicked", "bounced", "soft_bounced", "complained", "unsubscribed"].forEach((k) => show("dash-" + k, d[k]));
      Object.entries(d.rates || {}).forEach(([k, rate]) => show("dash-rate-" + k, rate === null ? null : rate + "%"));
      const complaints = document.getElementById("dash-complaint-rate");
      if (complaints && d.complaint_rate) {
        const cr = d.complaint_rate;
        complaints.hidden = cr.rate === null;
        complaints.className = "dash-complaint-rate complaint-" + cr.level + (cr.level === "danger" ? " errornote" : "");
        show("dash-complaint-rate-value", cr.rate === null ? null : cr.rate + "%");
        show("dash-complaint-rate-base", cr.base);
        show("dash-complaint-rate-message", cr.message);
      }
      show("dash-percent", d.progress_percent);
      show("dash-started", d.started_at);
      show("dash-completed", d.completed_at);
      show("dash-duration", d.duration);
      show("dash-eps", d.emails_per_second);
      show("dash-eta", d.estimated_finish);
      const wait = document.getElementById("dash-quota-wait");
      if (wait) {
        wait.textContent = d.quota_wait;
        wait.hidden = !d.quota_wait;
      }
      const held = document.getElementById("dash-domain-holds");
      if (held) {
        held.textContent = d.domain_holds;
        held.hidden = !d.domain_holds;
      }
      const accounts = document.getElementById("dash-accounts");
      if (accounts) {
        const rows = (d.sends_per_account || []).map(([name, sent]) => {
          const tr = document.createElement("tr");
          [name, sent].forEach((v) => { const td = document.createElement("td"); td.textContent = v; tr.appendChild(td); });
          return tr;
        });
        accounts.tBodies[0].replaceChildren(...rows);
        accounts.hidden = rows.length === 0;
      }
      document.getElementById("dash-progress").value = d.progress_percent;
      const rate = document.getElementById("dash-rate");
      rate.textContent = d.delivery_rate === null ? "—" : d.delivery_rate + "%";
      rate.className = "dash-value delivery-rate rate-" + d.rate_level;
      document.getElementById("dash-engagement").hidden = !d.engagement_known;
      document.getElementById("dash-chart").innerHTML = d.chart_svg;  // server-rendered, numbers only
      document.getElementById("dash-engagement-chart").innerHTML = d.engagement_chart_svg;  // likewise
    } catch (e) {
      // A missed poll is retried at the next tick.
    }
  }
  setInterval(poll, every);
})();
