// The campaign form's HTML editor: CodeMirror 6 over a <textarea> that stays the form field.
// Built into one file by `make codemirror` (see README.md); the page calls window.MailerEditor.attach.
import { EditorState } from "@codemirror/state";
import {
  EditorView, keymap, lineNumbers, highlightActiveLine, highlightActiveLineGutter, drawSelection,
  highlightSpecialChars,
} from "@codemirror/view";
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import {
  foldGutter, foldKeymap, indentOnInput, bracketMatching, syntaxHighlighting, defaultHighlightStyle,
} from "@codemirror/language";
import { searchKeymap, highlightSelectionMatches } from "@codemirror/search";
import { closeBrackets, closeBracketsKeymap } from "@codemirror/autocomplete";
import { html } from "@codemirror/lang-html";

// Attach an editor after TEXTAREA (which is hidden, and kept in step so the form posts it).
// NONCE: the page's CSP nonce, for the <style> elements CodeMirror adds. Returns
// {view, insert(text), setValue(text), focus()}.
function attach(textarea, nonce) {
  const sync = (value) => {
    textarea.value = value;
    textarea.dispatchEvent(new Event("input", { bubbles: true }));
  };
  const view = new EditorView({
    state: EditorState.create({
      doc: textarea.value,
      extensions: [
        EditorView.cspNonce.of(nonce || ""),
        lineNumbers(), highlightActiveLineGutter(), highlightSpecialChars(), history(), foldGutter(),
        drawSelection(), indentOnInput(), syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
        bracketMatching(), closeBrackets(), highlightActiveLine(), highlightSelectionMatches(),
        EditorView.lineWrapping, html(),
        keymap.of([...closeBracketsKeymap, ...defaultKeymap, ...searchKeymap, ...historyKeymap, ...foldKeymap,
                   indentWithTab]),
        EditorView.editorAttributes.of({ class: "campaign-code-editor" }),
        EditorView.contentAttributes.of({ "aria-label": textarea.getAttribute("aria-label") || "HTML body" }),
        EditorView.updateListener.of((update) => { if (update.docChanged) sync(update.state.doc.toString()); }),
      ],
    }),
  });
  textarea.insertAdjacentElement("afterend", view.dom);
  textarea.hidden = true;
  return {
    view,
    insert(text) {
      const { from, to } = view.state.selection.main;
      view.dispatch({ changes: { from, to, insert: text }, selection: { anchor: from + text.length },
                      scrollIntoView: true });
      view.focus();
    },
    setValue(text) {
      view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: text } });
    },
    focus() { view.focus(); },
  };
}

window.MailerEditor = { attach };
