// The error summary at the top of a change form (templates admin/campaigns/change_form.html): focused when the
// page loads, so that it is seen and read out first; each link moves the focus to its field, with the field's
// label in view (the GOV.UK error summary pattern).
(function () {
  "use strict";
  const summary = document.getElementById("error-summary");
  if (!summary) return;
  summary.focus();
  summary.addEventListener("click", (event) => {
    const link = event.target.closest("a[href^='#']");
    const field = link && document.getElementById(decodeURIComponent(link.getAttribute("href").slice(1)));
    if (!field) return;
    event.preventDefault();
    const details = field.closest("details");  // a folded fieldset opens to show its field
    if (details) details.open = true;
    const row = field.closest(".form-row, .fieldBox, .form-multiline") || field;
    row.scrollIntoView({block: "start"});
    field.focus({preventScroll: true});
    history.replaceState(null, "", link.getAttribute("href"));
  });
})();
