// Applies the theme before the page paints: the URL's `theme` wins, then the stored choice, else the
// system's (CSS prefers-color-scheme). Loaded in <head> without defer for that reason.
(function () {
  "use strict";
  var t = new URLSearchParams(location.search).get("theme");
  if (!t) { try { t = localStorage.getItem("vigil.theme"); } catch (e) { t = null; } }
  if (t === "light" || t === "dark") document.documentElement.setAttribute("data-theme", t);
})();
