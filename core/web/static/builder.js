// The recipe builder (no build step; the CSP forbids inline scripts).
// <select data-fill="INPUT-ID">: choosing an option puts its value into that input (a field
// as "{{ path }}", or a real value from the connection) and lets htmx check it.
document.addEventListener("change", function (event) {
  var select = event.target;
  if (!select.matches || !select.matches("select[data-fill]") || !select.value) { return; }
  var input = document.getElementById(select.getAttribute("data-fill"));
  if (!input) { return; }
  input.value = select.value;
  var kind = input.parentNode.querySelector("input[type=hidden][name^='steps.'][name*='.kind.']");
  if (kind) { kind.parentNode.removeChild(kind); }
  select.value = "";
  input.dispatchEvent(new Event("change", { bubbles: true }));
  input.focus();
});
