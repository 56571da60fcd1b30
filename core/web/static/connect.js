// Connected apps: after "Connect", follow the consent link (a form may not redirect to
// another origin under the CSP's form-action 'self'; a link may).
document.addEventListener("DOMContentLoaded", function () {
  var link = document.querySelector("a[data-follow]");
  if (link) { window.location.assign(link.href); }
});
