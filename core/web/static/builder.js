// The recipe builder (no build step; the CSP forbids inline scripts).
// <select data-fill="INPUT-ID">: choosing an option puts its value into that input (a field
// as "{{ path }}", or a real value from the connection) and lets htmx check it. With
// data-array the value is added to the input's JSON list instead (a list of ids).
function spliceAddToList(text, value) {
  var list = [];
  try { list = JSON.parse(text || "[]"); } catch (e) { list = []; }
  if (!Array.isArray(list)) { list = []; }
  if (list.indexOf(value) < 0) { list.push(value); }
  return JSON.stringify(list);
}
document.addEventListener("change", function (event) {
  var select = event.target;
  if (!select.matches || !select.matches("select[data-fill]") || !select.value) { return; }
  var input = document.getElementById(select.getAttribute("data-fill"));
  if (!input) { return; }
  input.value = select.hasAttribute("data-array") ? spliceAddToList(input.value, select.value)
    : select.value;
  var kind = input.parentNode.querySelector("input[type=hidden][name*='.kind.']");
  if (kind) { kind.parentNode.removeChild(kind); }
  select.value = "";
  input.dispatchEvent(new Event("change", { bubbles: true }));
  input.focus();
});
