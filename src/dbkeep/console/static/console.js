// dbkeep console: the little JavaScript it has (no build step). The pages work without it.
"use strict";
// A page whose resources are changing state (creating, resetting-master-credentials ...) reloads
// itself every few seconds until they settle; not while the user is typing in a form.
(function () {
  var seconds = parseInt(document.body.getAttribute("data-refresh") || "0", 10);
  if (!seconds) return;
  function busy() {
    var el = document.activeElement;
    return el && (el.tagName === "INPUT" || el.tagName === "SELECT" || el.tagName === "TEXTAREA") && el.value !== "";
  }
  setInterval(function () { if (!busy()) window.location.reload(); }, seconds * 1000);
})();
// Copy buttons (the access key shown once).
document.addEventListener("click", function (event) {
  var target = event.target.closest("[data-copy]");
  if (!target) return;
  var text = document.getElementById(target.getAttribute("data-copy")).textContent;
  navigator.clipboard.writeText(text).then(function () { target.textContent = "Copied"; });
});
