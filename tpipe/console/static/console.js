// tpipe console: refresh the parts of a page marked data-refresh="SECONDS" from the same URL, in place,
// for as long as the fresh part is still marked (a job's page stops once the job has finished).
(function () {
  "use strict";
  function refresh(el, seconds) {
    window.setTimeout(function () {
      fetch(window.location.href, { headers: { "X-Console-Fragment": el.id }, credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
        .then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          var fresh = doc.getElementById(el.id);
          if (fresh) { el.replaceWith(fresh); el = fresh; }
          el.dataset.refreshedAt = new Date().toISOString();
        })
        .catch(function () { /* the console itself may be restarting: try again next time */ })
        .then(function () { if (el.dataset.refresh) { refresh(el, seconds); } });
    }, seconds * 1000);
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-refresh]").forEach(function (el) {
      refresh(el, parseFloat(el.dataset.refresh) || 5);
    });
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (ev) {
        if (!window.confirm(form.dataset.confirm)) { ev.preventDefault(); }
      });
    });
  });
})();
