// splice dashboard behaviours (no build step; the CSP forbids inline scripts).
// - <form data-confirm="question">: asks before submitting.
// - <button data-copy="text">: copies text to the clipboard.
document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form.getAttribute && form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) { event.preventDefault(); }
});
document.addEventListener("click", function (event) {
  var button = event.target.closest && event.target.closest("[data-copy]");
  if (button && navigator.clipboard) {
    navigator.clipboard.writeText(button.getAttribute("data-copy"));
    button.textContent = "Copied";
  }
});
