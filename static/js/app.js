// Gatehouse's only script besides htmx. The CSP forbids inline script and eval, so behaviour that pages
// need is declared with data- attributes and wired up here.
(function () {
  "use strict";

  // Polling elements (data-poll-visible) stay quiet while the tab is hidden, instead of spending
  // requests nobody looks at. htmx trigger filters would need eval, which the CSP does not allow.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var source = event.detail.elt;
    if (document.visibilityState !== "visible" && source && source.hasAttribute("data-poll-visible")) {
      event.preventDefault();
    }
  });

  // A button or form with data-confirm asks before it submits (the page still works without script:
  // the action then runs on the first click, which is why destructive actions also have a confirm page).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var message = form.getAttribute("data-confirm");
    if (message && !window.confirm(message)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  // Toasts fade out by CSS; remove them afterwards so the region does not fill up.
  document.addEventListener("animationend", function (event) {
    if (event.target.classList && event.target.classList.contains("toast")) {
      event.target.remove();
    }
  });
})();
