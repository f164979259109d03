// The audience builder: rows of column / operator / value, combined with all or any. Every change asks the
// server for the count (segment.json, debounced); the server validates and compiles the filter, this
// script only builds the data. Values are set with textContent/value, never as HTML.
(function () {
  "use strict";
  const root = document.getElementById("campaign-segment");
  const builder = document.getElementById("segment-builder");
  const dataEl = document.getElementById("segment-data");
  if (!root || !builder || !dataEl) return;
  const data = JSON.parse(dataEl.textContent);
  const list = document.getElementById("segment-conditions");
  const match = document.getElementById("segment-match");
  const message = document.getElementById("segment-message");
  const csrf = document.querySelector("[name=csrfmiddlewaretoken]");
  const takesValue = {};
  data.operators.forEach((op) => { takesValue[op.name] = op.takes_value; });

  function option(value, label, selected) {
    const el = document.createElement("option");
    el.value = value;
    el.textContent = label;
    el.selected = selected;
    return el;
  }

  function addRow(condition) {
    const li = document.createElement("li");
    li.className = "segment-condition";
    const column = document.createElement("select");
    column.className = "segment-column";
    data.columns.forEach((c) => column.appendChild(option(c, c, c === condition.column)));
    const operator = document.createElement("select");
    operator.className = "segment-operator";
    data.operators.forEach((op) => operator.appendChild(option(op.name, op.label, op.name === condition.operator)));
    const value = document.createElement("input");
    value.className = "segment-value";
    value.type = "text";
    const shown = condition.value;
    value.value = Array.isArray(shown) ? shown.join(", ") : (shown === null || shown === undefined ? "" : shown);
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "button segment-remove";
    remove.textContent = "Remove";
    remove.addEventListener("click", () => { li.remove(); changed(); });
    function fit() {
      const op = operator.value;
      value.hidden = !takesValue[op];
      value.type = op === "before" || op === "after" ? "date" : "text";
      value.placeholder = op === "in" ? "value, value, …" : "";
    }
    operator.addEventListener("change", () => { fit(); changed(); });
    column.addEventListener("change", changed);
    value.addEventListener("input", changed);
    fit();
    li.append(column, " ", operator, " ", value, " ", remove);
    list.appendChild(li);
  }

  function current() {
    const conditions = Array.from(list.querySelectorAll(".segment-condition")).map((li) => {
      const op = li.querySelector(".segment-operator").value;
      const raw = li.querySelector(".segment-value").value;
      return {column: li.querySelector(".segment-column").value, operator: op,
              value: takesValue[op] ? raw : null};
    });
    return {match: match.value, conditions: conditions};
  }

  function show(result) {
    if (result.error) {
      message.textContent = result.error;
      message.className = "segment-message errornote";
      return;
    }
    message.className = "segment-message";
    message.textContent = result.message || "";
    document.getElementById("segment-matching").textContent = result.matching;
    document.getElementById("segment-total").textContent = result.total;
    document.getElementById("segment-description").textContent = result.description;
  }

  // Answers can come back out of order (a count queued 300 ms after a change, then a save): only the
  // answer to the latest request is shown, so a late count never wipes out "Segment saved".
  let timer = null;
  let latest = 0;

  async function send(save) {
    clearTimeout(timer);  // a save counts too: no queued count of the same conditions after it
    const sent = ++latest;
    let result;
    try {
      const response = await fetch(root.dataset.url, {
        method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", Accept: "application/json",
                  "X-CSRFToken": csrf ? csrf.value : ""},
        body: JSON.stringify({segment: current(), save: save}),
      });
      result = await response.json();
    } catch (e) {
      result = {error: "The count could not be updated; try again."};
    }
    if (sent === latest) {
      show(result);
    }
  }

  function changed() {
    clearTimeout(timer);
    timer = setTimeout(() => send(false), 300);
  }

  match.value = data.segment.match || "all";
  match.addEventListener("change", changed);
  (data.segment.conditions || []).forEach(addRow);
  document.getElementById("segment-add").addEventListener("click", () => {
    addRow({column: data.columns[data.columns.length - 1], operator: "equals", value: ""});
  });
  document.getElementById("segment-save").addEventListener("click", () => send(true));
  document.getElementById("segment-clear").addEventListener("click", () => {
    list.textContent = "";
    send(true);
  });
  builder.hidden = false;
})();
