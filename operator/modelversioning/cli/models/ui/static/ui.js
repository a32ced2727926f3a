// kubectl models ui: live pages. The server pushes `change` (server-sent events, from its shared watch
// cache); the page then fetches itself once and swaps <main>. No polling; no inline script (CSP).
(function () {
  "use strict";
  var live = document.getElementById("live");
  var main = document.querySelector("main[data-live]");
  function say(text) { if (live) { live.textContent = text; } }
  if (!main || !window.EventSource) { say(main ? "static" : ""); return; }
  var busy = false, again = false;
  function editing() {
    var a = document.activeElement;
    return a && a !== document.body && /^(INPUT|SELECT|TEXTAREA)$/.test(a.tagName) && main.contains(a);
  }
  // A keyboard user's place survives a live update: the focused link, button or field of the old
  // <main> is found again in the new one (same id, or same tag, href and name at the same rank).
  function focusKey() {
    var a = document.activeElement;
    if (!a || a === document.body || !main.contains(a)) { return null; }
    if (a.id) { return { id: a.id }; }
    var sel = a.tagName.toLowerCase();
    if (a.getAttribute("href")) { sel += '[href="' + CSS.escape(a.getAttribute("href")) + '"]'; }
    if (a.name) { sel += '[name="' + CSS.escape(a.name) + '"]'; }
    return { sel: sel, rank: Array.prototype.indexOf.call(main.querySelectorAll(sel), a) };
  }
  function refocus(key, root) {
    if (!key) { return; }
    var el = key.id ? root.querySelector("#" + CSS.escape(key.id)) : root.querySelectorAll(key.sel)[key.rank];
    if (el && el.focus) { el.focus({ preventScroll: true }); }
  }
  function refresh() {
    if (busy || editing()) { again = true; return; }
    busy = true;
    fetch(location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.querySelector("main[data-live]");
        var current = document.querySelector("main[data-live]");
        if (fresh && current) {
          var key = focusKey();
          current.replaceWith(document.adoptNode(fresh));
          main = fresh;
          refocus(key, fresh);
        }
        say("live · updated " + new Date().toLocaleTimeString());
      })
      .catch(function (e) { say("update failed (" + e + ")"); })
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }
  document.addEventListener("focusout", function () { if (again) { setTimeout(refresh, 0); } });
  var es = new EventSource(document.body.getAttribute("data-root") + "/events");  // under the secret prefix
  es.addEventListener("hello", function () { say("live"); });
  es.addEventListener("change", function () { refresh(); });
  es.onerror = function () { say("reconnecting…"); };
})();
