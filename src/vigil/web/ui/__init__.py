"""Vigil's web UI: server-rendered pages (Jinja2, autoescaped), small hand-written JS and vendored uPlot.

`pages.PagesAPI` serves the pages and their static files like the other web APIs (`routes()`);
`state` parses the URL state every page shares (time range, refresh, theme, time zone);
`panels` holds the PromQL of the built-in panels; `static` serves the package's static files
with content-hashed URLs. Nothing here needs a front-end build step or a network beyond the server.
"""
