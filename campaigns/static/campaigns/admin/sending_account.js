// The sending account form follows the account's kind: SMTP and Amazon SES show the server, its login, DKIM
// and the bounce mailbox; SendGrid shows the API key and host. Which rows to hide, per kind, comes from the
// server (#account-kind-fields, campaigns/admin/sending_accounts.py), which also ignores what is hidden.
(function () {
  "use strict";
  function start() {
    const kind = document.getElementById("id_kind");
    const dataEl = document.getElementById("account-kind-fields");
    if (!kind || !dataEl) return;
    const byKind = JSON.parse(dataEl.textContent);
    const secretLabel = document.querySelector("label[for=id_new_secret]");
    const allHidden = new Set();
    Object.values(byKind).forEach((spec) => spec.hide.forEach((name) => allHidden.add(name)));

    function show(element, shown) {
      element.style.display = shown ? "" : "none";  // CSSOM, which the Content-Security-Policy allows
      element.dataset.kindHidden = shown ? "" : "yes";
    }

    function apply() {
      const spec = byKind[kind.value] || {hide: [], secret_label: ""};
      const hide = new Set(spec.hide);
      allHidden.forEach((name) => {
        const row = document.querySelector(".form-row.field-" + name);
        if (row) show(row, !hide.has(name));
      });
      // A fieldset whose every row is hidden (Bounces, DKIM for SendGrid) goes too, with its heading.
      document.querySelectorAll("fieldset.module").forEach((fieldset) => {
        const rows = Array.from(fieldset.querySelectorAll(".form-row"));
        show(fieldset, !(rows.length > 0 && rows.every((row) => row.dataset.kindHidden === "yes")));
      });
      if (secretLabel && spec.secret_label) secretLabel.textContent = spec.secret_label + ":";
    }

    kind.addEventListener("change", apply);
    apply();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
