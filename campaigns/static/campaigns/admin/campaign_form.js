// The campaign form: prefill from a starter template, and a live preview of the HTML body in a
// sandboxed iframe (no scripts, no same-origin access), refreshed as you type.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    const dataEl = document.getElementById("starter-templates");
    const templates = dataEl ? JSON.parse(dataEl.textContent) : [];
    const chooser = document.getElementById("id_start_from");
    const field = (name) => document.getElementById("id_" + name);
    if (chooser) {
      chooser.addEventListener("change", function () {
        const t = templates.find((x) => String(x.id) === chooser.value);
        if (!t) return;
        const html = field("html_body");
        if (html && html.value.trim() && html.value !== t.html_body &&
            !window.confirm("Replace the subject and bodies with the template's?")) return;
        if (field("name") && !field("name").value.trim()) field("name").value = t.name;
        field("subject").value = t.subject;
        html.value = t.html_body;
        if (field("text_body")) field("text_body").value = t.text_body;
        html.dispatchEvent(new Event("input"));
      });
    }
    const body = field("html_body");
    if (body && body.tagName === "TEXTAREA") {
      const frame = document.createElement("iframe");
      frame.setAttribute("sandbox", "");
      frame.className = "campaign-html-preview";
      frame.id = "html-live-preview";
      frame.title = "Live preview of the HTML body (merge tags shown as written)";
      body.insertAdjacentElement("afterend", frame);
      let timer = null;
      const refresh = () => { frame.srcdoc = body.value; };
      body.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(refresh, 300); });
      refresh();
    }
  });
})();
