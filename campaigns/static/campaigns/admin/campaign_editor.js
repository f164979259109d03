// The campaign form's editor (issue 25, item 10), over the plain form, which works without it:
// - the HTML body in CodeMirror (codemirror.min.js, vendored) beside the live preview (campaign_form.js
//   fills it), which shows the email at desktop or phone width; the textarea stays the form field;
// - the body format (HTML or Markdown): the Markdown body moves into the editor's place;
// - a merge-tag picker (the recipients' columns, then the built-in tags) inserting at the cursor;
// - a new A/B variant gets the next free letter.
// CodeMirror adds <style> elements: they carry this script's CSP nonce (the page's policy stays strict).
(function () {
  "use strict";
  const nonce = (document.currentScript && document.currentScript.nonce) || "";

  const el = (tag, props, children) => {
    const node = Object.assign(document.createElement(tag), props || {});
    (children || []).forEach((child) => node.append(child));
    return node;
  };

  function variantLetters() {
    document.addEventListener("formset:added", (event) => {
      if (!event.detail || event.detail.formsetName !== "variants") return;
      const select = event.target.querySelector('select[name$="-letter"]');
      if (!select || select.value) return;
      const used = new Set(Array.from(document.querySelectorAll('#variants-group select[name$="-letter"]'))
        .filter((other) => other !== select).map((other) => other.value));
      const free = ["A", "B", "C", "D"].find((letter) => !used.has(letter));
      if (free) select.value = free;
    });
  }

  function mergeTagPicker(insert) {
    const dataEl = document.getElementById("merge-tag-choices");
    const choices = dataEl ? JSON.parse(dataEl.textContent) : { columns: [], builtin: [] };
    const select = el("select", { id: "merge-tag-picker", className: "merge-tag-picker" });
    select.append(el("option", { value: "", textContent: "Insert a merge tag…" }));
    [["Columns of the recipients", choices.columns], ["Built-in", choices.builtin]].forEach(([label, tags]) => {
      if (!tags.length) return;
      const group = el("optgroup", { label: label });
      tags.forEach((tag) => group.append(el("option", { value: tag, textContent: "{{ " + tag + " }}" })));
      select.append(group);
    });
    select.addEventListener("change", () => {
      if (!select.value) return;
      insert("{{ " + select.value + " }}");
      select.value = "";
    });
    return el("label", { className: "merge-tag-label" }, [el("span", { textContent: "Merge tag " }), select]);
  }

  function insertIntoTextarea(area, text) {
    const start = area.selectionStart, end = area.selectionEnd;
    area.setRangeText(text, start, end, "end");
    area.dispatchEvent(new Event("input", { bubbles: true }));
    area.focus();
  }

  document.addEventListener("DOMContentLoaded", function () {
    variantLetters();
    const html = document.getElementById("id_html_body");
    if (!html || html.tagName !== "TEXTAREA") return;
    const markdown = document.getElementById("id_markdown_body");
    const formats = Array.from(document.querySelectorAll('input[name="body_format"]'));
    const markdownMode = () => formats.some((input) => input.checked && input.value === "markdown");

    const editorPane = el("div", { className: "campaign-editor-pane" });
    // campaign_form.js puts the preview frame in the box; at desktop width the email is laid out 640 px wide and
    // scaled down to the box (a CSS variable set through the CSSOM, which the CSP allows; no inline style).
    const previewBox = el("div", { className: "campaign-preview-box", id: "campaign-preview-box" });
    const previewPane = el("div", { className: "campaign-preview-pane" });
    const scale = () => previewBox.style.setProperty("--preview-scale",
                                                     String(Math.min(1, previewBox.clientWidth / 640) || 1));
    if (window.ResizeObserver) new ResizeObserver(scale).observe(previewBox);
    const layout = el("div", { className: "campaign-editor-layout" }, [editorPane, previewPane]);
    html.insertAdjacentElement("beforebegin", layout);
    if (html.closest(".form-row")) html.closest(".form-row").classList.add("campaign-body-row");

    let editor = null;
    const insert = (text) => {
      if (markdown && markdownMode()) insertIntoTextarea(markdown, text);
      else if (editor) editor.insert(text);
      else insertIntoTextarea(html, text);
    };
    editorPane.append(el("div", { className: "campaign-editor-toolbar" }, [mergeTagPicker(insert)]), html);
    if (window.MailerEditor) {
      editor = window.MailerEditor.attach(html, nonce);
      window.campaignEditor = editor;  // campaign_form.js sets a starter template's HTML through it
    }

    // The preview at desktop or phone width.
    const widths = el("div", { className: "preview-widths" });
    widths.setAttribute("role", "group");
    widths.setAttribute("aria-label", "Preview width");
    [["desktop", "Desktop"], ["phone", "Phone"]].forEach(([value, label]) => {
      const button = el("button", { type: "button", className: "button preview-width", textContent: label });
      button.dataset.width = value;
      button.setAttribute("aria-pressed", String(value === "desktop"));
      button.addEventListener("click", () => {
        previewPane.classList.toggle("phone", value === "phone");
        widths.querySelectorAll("button").forEach((other) =>
          other.setAttribute("aria-pressed", String(other === button)));
      });
      widths.append(button);
    });
    previewPane.append(el("div", { className: "preview-header" }, [
      el("span", { className: "preview-title", textContent: "Preview" }), widths]), previewBox);
    scale();

    // Markdown: its textarea takes the editor's place (its own row hidden) while that format is chosen.
    if (markdown && formats.length) {
      const markdownRow = markdown.closest(".form-row");
      const htmlLabel = document.querySelector('label[for="id_html_body"]');
      const htmlHelp = document.getElementById("id_html_body_helptext");
      const labelText = htmlLabel ? htmlLabel.textContent : "";
      editorPane.append(markdown);
      if (markdownRow) markdownRow.hidden = true;
      const apply = () => {
        const md = markdownMode();
        markdown.hidden = !md;
        if (editor) editor.view.dom.hidden = md; else html.hidden = md;
        if (htmlLabel) htmlLabel.textContent = md ? "Markdown body:" : labelText;
        if (htmlHelp) htmlHelp.classList.toggle("markdown-mode", md);
      };
      formats.forEach((input) => input.addEventListener("change", apply));
      apply();
    }
  });
})();
