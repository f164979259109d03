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
      const count = (n) => (typeof n === "number" ? n.toLocaleString("en-US") : n);  // 49,200 as the server writes it
      ["sent", "failed", "unknown", "skipped", "pending", "sending", "opened",
       "machine_opened", "clicked", "bounced", "soft_bounced", "complained", "unsubscribed"].forEach((k) => show("dash-" + k, count(d[k])));
      show("dash-delivered", d.delivered_known ? count(d.delivered) : d.delivered_unknown_text);
      show("dash-headline", d.headline);
      const abWait = document.getElementById("dash-ab-wait");
      if (abWait) {
        abWait.textContent = d.ab_wait;
        abWait.hidden = !d.ab_wait;
      }
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
          [name, count(sent)].forEach((v) => { const td = document.createElement("td"); td.textContent = v; tr.appendChild(td); });
          return tr;
        });
        accounts.tBodies[0].replaceChildren(...rows);
        accounts.hidden = rows.length === 0;
      }
      const bar = document.getElementById("dash-progress");
      if (bar) bar.value = d.progress_percent;
      const rate = document.getElementById("dash-rate");
      rate.textContent = d.accepted_rate === null ? "—" : d.accepted_rate + "%";
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
