// The page shell: the time-range picker, auto-refresh, theme switch and local/UTC times. All state
// is in the URL (see vigil/web/ui/state.py), so every control ends in a navigation to a new URL.
(function () {
  "use strict";
  var body = document.body;
  var root = document.documentElement;

  function params() { return new URLSearchParams(location.search); }

  // Navigates to the current page with `changes` applied (null deletes a parameter).
  function go(changes) {
    var p = params();
    Object.keys(changes).forEach(function (k) {
      if (changes[k] === null || changes[k] === "") p.delete(k); else p.set(k, changes[k]);
    });
    p.delete("page");
    var qs = p.toString();
    location.assign(location.pathname + (qs ? "?" + qs : ""));
  }
  window.vigilGo = go;

  var utc = root.getAttribute("data-tz") === "utc";
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function fmtDate(d) {
    if (utc) return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) + " " +
      pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds()) + " UTC";
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }
  // <input type=datetime-local> value for `ms`, in the chosen zone.
  function localInput(ms) {
    var d = new Date(utc ? ms : ms - new Date(ms).getTimezoneOffset() * 60000);
    return d.toISOString().slice(0, 19);
  }
  function fromInput(value) {
    if (!value) return NaN;
    return utc ? Date.parse(value + "Z") : new Date(value).getTime();
  }
  document.querySelectorAll("time[datetime]").forEach(function (t) {
    var d = new Date(t.getAttribute("datetime"));
    if (!isNaN(d)) { t.textContent = fmtDate(d); t.title = d.toISOString(); }
  });

  var form = document.getElementById("controls");
  var range = document.getElementById("range");
  var custom = document.getElementById("custom");
  var fromIn = document.getElementById("from-input");
  var toIn = document.getElementById("to-input");
  var start = Number(body.getAttribute("data-start"));
  var end = Number(body.getAttribute("data-end"));
  if (fromIn) { fromIn.value = localInput(start); toIn.value = localInput(end); }

  function applyCustom() {
    var f = fromInput(fromIn.value), t = fromInput(toIn.value);
    if (isNaN(f) || isNaN(t) || t <= f) { toIn.setCustomValidity("“To” must be after “From”"); toIn.reportValidity(); return; }
    toIn.setCustomValidity("");
    go({ range: null, from: String(Math.floor(f / 1000)), to: String(Math.ceil(t / 1000)) });
  }
  if (form) {
    // Presets and switches apply at once; a custom range when its Apply button is pressed.
    var apply = form.querySelector("button.apply");
    apply.hidden = range.value !== "custom";
    range.addEventListener("change", function () {
      if (range.value === "custom") { custom.hidden = false; apply.hidden = false; fromIn.focus(); return; }
      go({ range: range.value === "1h" ? null : range.value, from: null, to: null });
    });
    document.getElementById("refresh").addEventListener("change", function (e) {
      go({ refresh: e.target.value === "off" ? null : e.target.value });
    });
    document.getElementById("tz").addEventListener("change", function (e) {
      go({ tz: e.target.value === "local" ? null : e.target.value });
    });
    form.addEventListener("submit", function (e) { e.preventDefault(); if (range.value === "custom") applyCustom(); });
  }

  // Theme: system -> light -> dark -> system. The choice is stored and put in the URL (shareable).
  var toggle = document.getElementById("theme-toggle");
  function currentTheme() { return root.getAttribute("data-theme") || ""; }
  function label() { toggle.textContent = "Theme: " + (currentTheme() || "system"); }
  if (toggle) {
    label();
    toggle.addEventListener("click", function () {
      var next = { "": "light", light: "dark", dark: "" }[currentTheme()];
      if (next) root.setAttribute("data-theme", next); else root.removeAttribute("data-theme");
      try { if (next) localStorage.setItem("vigil.theme", next); else localStorage.removeItem("vigil.theme"); } catch (e) { /* private mode */ }
      var p = params();
      if (next) p.set("theme", next); else p.delete("theme");
      var qs = p.toString();
      history.replaceState(null, "", location.pathname + (qs ? "?" + qs : ""));
      document.querySelectorAll("a[href^='/']").forEach(function (a) {
        var u = new URL(a.href);
        if (next) u.searchParams.set("theme", next); else u.searchParams.delete("theme");
        a.href = u.pathname + u.search;
      });
      label();
      window.dispatchEvent(new Event("vigil:theme"));
    });
  }

  // Auto-refresh: reload the same URL (a relative range moves with now); not while hidden.
  var every = Number(body.getAttribute("data-refresh-ms"));
  if (every > 0) {
    var due = Date.now() + every;
    setInterval(function () {
      if (!document.hidden && Date.now() >= due) location.reload();
    }, 1000);
  }
})();
