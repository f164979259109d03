// The follow-up page: once one "Create draft" is pressed, every button is disabled and says so, so a
// second press cannot make a second draft while a large group is being copied.
(function () {
  "use strict";
  document.querySelectorAll(".campaign-follow-up form").forEach((form) => {
    form.addEventListener("submit", () => {
      const pressed = form.querySelector("button");
      document.querySelectorAll(".campaign-follow-up button").forEach((button) => { button.disabled = true; });
      if (pressed) pressed.textContent = "Creating the draft…";
      const note = document.getElementById("follow-up-working");
      if (note) note.hidden = false;
    });
  });
})();
