// The campaign form: prefill from a starter template, and a live preview of the HTML body in a
// sandboxed iframe (no scripts, no same-origin access), refreshed as you type (posted to the live frame URL).
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
        const htmlFormat = document.querySelector('input[name="body_format"][value="html"]');
        if (htmlFormat && !htmlFormat.checked) {  // a template is HTML
          htmlFormat.checked = true;
          htmlFormat.dispatchEvent(new Event("change"));
        }
        if (window.campaignEditor) window.campaignEditor.setValue(t.html_body); else html.value = t.html_body;
        if (field("text_body")) field("text_body").value = t.text_body;
        html.dispatchEvent(new Event("input"));
      });
    }
    const body = field("html_body");
    const liveUrl = document.querySelector('meta[name="campaign-live-preview-url"]');
    const token = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (body && body.tagName === "TEXTAREA" && liveUrl && token) {
      // The HTML is posted to a frame URL of its own, whose relaxed, sandboxed policy covers only
      // the email (a srcdoc frame would inherit this page's policy).
      const form = document.createElement("form");
      form.method = "post";
      form.action = liveUrl.content;
      form.target = "html-live-preview";
      form.hidden = true;
      const input = (name, value) => {
        const el = document.createElement("input");
        el.type = "hidden";
        el.name = name;
        el.value = value;
        form.appendChild(el);
        return el;
      };
      input("csrfmiddlewaretoken", token.value);
      const html = input("html_body", "");
      // A Markdown body is previewed as the HTML it makes (campaign_editor.js shows the one chosen).
      const markdown = field("markdown_body");
      const format = input("body_format", "html");
      const markdownText = input("markdown_body", "");
      const formats = Array.from(document.querySelectorAll('input[name="body_format"]'));
      document.body.appendChild(form);
      let frame = null;
      let timer = null;
      const refresh = () => {
        // A new frame each time: its first load replaces its blank page, so typing adds no history entries.
        const fresh = document.createElement("iframe");
        fresh.setAttribute("sandbox", "");
        fresh.className = "campaign-html-preview";
        fresh.id = fresh.name = "html-live-preview";
        fresh.title = "Live preview of the HTML body (merge tags shown as written)";
        const pane = document.getElementById("campaign-preview-box");
        if (frame) frame.replaceWith(fresh); else if (pane) pane.appendChild(fresh);
        else body.insertAdjacentElement("afterend", fresh);
        frame = fresh;
        html.value = body.value;
        const chosen = formats.find((radio) => radio.checked);
        format.value = chosen ? chosen.value : "html";
        markdownText.value = markdown ? markdown.value : "";
        form.submit();
      };
      const later = () => { clearTimeout(timer); timer = setTimeout(refresh, 300); };
      body.addEventListener("input", later);
      if (markdown) markdown.addEventListener("input", later);
      formats.forEach((radio) => radio.addEventListener("change", later));
      refresh();
    }
  });
})();
