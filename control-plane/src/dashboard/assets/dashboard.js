// ModelGate dashboard: the only script (CSP: script-src 'self', no inline script).
// - A form with data-confirm asks before it is sent (revoking a key).
// - A button with data-copy="ID" copies the value of the input #ID (a secret shown once).
"use strict";
document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form.getAttribute && form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
document.addEventListener("click", function (event) {
  var button = event.target.closest && event.target.closest("button[data-copy]");
  if (!button) {
    return;
  }
  var field = document.getElementById(button.getAttribute("data-copy"));
  if (!field) {
    return;
  }
  field.select();
  if (navigator.clipboard) {
    navigator.clipboard.writeText(field.value).then(function () {
      button.textContent = "Copied";
    });
  }
});
