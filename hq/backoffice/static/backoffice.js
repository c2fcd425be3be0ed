// The back office's only script of its own (same origin, no inline code): a form whose
// data-confirm-field must match data-confirm-value before it is sent (erasing a member).
"use strict";
document.addEventListener("submit", function (event) {
  const form = event.target;
  const field = form.dataset ? form.dataset.confirmField : undefined;
  if (!field) return;
  const input = form.querySelector("[name='" + field + "']");
  if (!input || input.value !== form.dataset.confirmValue) {
    event.preventDefault();
    if (input) input.setCustomValidity(form.dataset.confirmMessage || "");
    if (input) input.reportValidity();
  }
});
document.addEventListener("input", function (event) {
  if (event.target.setCustomValidity) event.target.setCustomValidity("");
});
