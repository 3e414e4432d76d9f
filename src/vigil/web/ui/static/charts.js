// Time-series charts: each <div class="chart" data-series='[{expr, legend, name?}]'> is drawn with
// uPlot from /api/v1/query_range (same origin). The step follows the range and the chart's width
// (as Grafana's $__interval), `$__rate_interval` is max(step + scrape, 4 x scrape) so a rate always
// has samples; a dragged selection sets the URL's from/to (a new view, shareable).
(function () {
  "use strict";
  var SCRAPE_S = 15; // the agent's default interval (agent.interval)
  var MAX_POINTS = 11000; // the query API's limit per series
  var NICE = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
  var IEC = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  var body = document.body;
  var utc = document.documentElement.getAttribute("data-tz") === "utc";

  function pickStep(rangeS, widthPx) {
    var raw = Math.max(rangeS / Math.max(widthPx, 100), SCRAPE_S, rangeS / MAX_POINTS);
    for (var i = 0; i < NICE.length; i++) if (NICE[i] >= raw) return NICE[i];
    return Math.ceil(raw / 86400) * 86400;
  }
  function expand(expr, step) {
    var rate = Math.max(step + SCRAPE_S, 4 * SCRAPE_S);
    return expr.split("$__rate_interval").join(rate + "s").split("$__interval").join(step + "s");
  }

  function short(v) {
    var a = Math.abs(v);
    if (a >= 1e9) return +(v / 1e9).toPrecision(3) + "G";
    if (a >= 1e6) return +(v / 1e6).toPrecision(3) + "M";
    if (a >= 1e4) return +(v / 1e3).toPrecision(3) + "k";
    if (a >= 100 || v === Math.round(v)) return v.toFixed(0);
    return String(+v.toPrecision(3));
  }
  function bytes(v) {
    var i = 0;
    while (Math.abs(v) >= 1024 && i < IEC.length - 1) { v /= 1024; i++; }
    return (i === 0 ? v.toFixed(0) : String(+v.toPrecision(3))) + " " + IEC[i];
  }
  function fmt(v, unit) {
    if (v === null || v === undefined) return "–";
    if (!isFinite(v)) return String(v);
    switch (unit) {
      case "percentunit": return (v * 100).toFixed(1) + "%";
      case "percent": return v.toFixed(1) + "%";
      case "bytes": return bytes(v);
      case "Bps": return bytes(v) + "/s";
      case "s": return Math.abs(v) < 60 ? +v.toPrecision(3) + " s" : Math.abs(v) < 3600 ? +(v / 60).toPrecision(3) + " min" : +(v / 3600).toPrecision(3) + " h";
      case "ops": return short(v) + " ops/s";
      default: return short(v);
    }
  }
  window.vigilFmt = fmt;

  function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }
  function palette() {
    var out = [];
    for (var i = 1; i <= 8; i++) out.push(css("--c" + i));
    return out;
  }
  function parseValue(s) {
    if (s === "+Inf") return Infinity;
    if (s === "-Inf") return -Infinity;
    return parseFloat(s);
  }
  function seriesName(metric, legend, fixed) {
    if (fixed) return fixed;
    if (legend) {
      var vals = legend.split(",").map(function (k) { return metric[k]; }).filter(function (v) { return v !== undefined; });
      if (vals.length) return vals.join(" ");
    }
    var parts = [];
    Object.keys(metric).sort().forEach(function (k) { if (k !== "__name__") parts.push(k + "=" + JSON.stringify(metric[k])); });
    return parts.length ? "{" + parts.join(", ") + "}" : "value";
  }

  function query(expr, start, end, step) {
    var form = new URLSearchParams({ query: expr, start: String(start), end: String(end), step: String(step) });
    return fetch("/api/v1/query_range", {
      method: "POST", body: form, credentials: "same-origin",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
    }).then(function (r) {
      return r.json().then(function (j) {
        if (j.status !== "success") throw new Error(j.error || ("HTTP " + r.status));
        return j.data.result;
      });
    });
  }

  function message(el, text, cls) {
    var p = document.createElement("p");
    p.className = "chart-msg " + (cls || "");
    p.textContent = text;
    el.appendChild(p);
  }

  function fillTable(fig, names, columns, unit) {
    var tbody = fig.querySelector(".chart-table tbody");
    if (!tbody) return;
    tbody.textContent = "";
    names.forEach(function (name, i) {
      var vals = columns[i].filter(function (v) { return v !== null && isFinite(v); });
      var last = null;
      for (var j = columns[i].length - 1; j >= 0; j--) if (columns[i][j] !== null) { last = columns[i][j]; break; }
      var tr = document.createElement("tr");
      [name, fmt(last, unit), fmt(vals.length ? Math.min.apply(null, vals) : null, unit),
        fmt(vals.length ? Math.max.apply(null, vals) : null, unit)].forEach(function (text, k) {
        var td = document.createElement(k === 0 ? "th" : "td");
        if (k === 0) td.scope = "row"; else td.className = "num";
        td.textContent = text;
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    });
  }

  function zoomTo(u) {
    var sel = u.select;
    if (sel.width < 3) return;
    var lo = u.posToVal(sel.left, "x"), hi = u.posToVal(sel.left + sel.width, "x");
    if (hi - lo < 10) { var mid = (lo + hi) / 2; lo = mid - 5; hi = mid + 5; }
    window.vigilGo({ range: null, from: String(Math.floor(lo)), to: String(Math.ceil(hi)) });
  }

  function thresholdsPlugin(thresholds) {
    return {
      hooks: {
        draw: [function (u) {
          var ctx = u.ctx;
          thresholds.forEach(function (t) {
            var y = u.valToPos(t.value, "y", true);
            if (y < u.bbox.top || y > u.bbox.top + u.bbox.height) return;
            ctx.save();
            ctx.strokeStyle = css(t.level === "crit" ? "--crit" : "--warn");
            ctx.setLineDash([6, 4]);
            ctx.lineWidth = 1.5 * devicePixelRatio;
            ctx.beginPath();
            ctx.moveTo(u.bbox.left, y);
            ctx.lineTo(u.bbox.left + u.bbox.width, y);
            ctx.stroke();
            ctx.restore();
          });
        }],
      },
    };
  }

  function draw(el, xs, names, columns, unit, thresholds) {
    var colors = palette(), fg = css("--fg"), grid = css("--grid");
    var series = [{ value: function (u, v) { return v === null ? "–" : new Date(v * 1000)[utc ? "toISOString" : "toLocaleString"](); } }];
    names.forEach(function (name, i) {
      series.push({ label: name, stroke: colors[i % colors.length], width: 1.5, spanGaps: false,
        value: function (u, v) { return fmt(v, unit); } });
    });
    var axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    var opts = {
      width: Math.max(el.clientWidth, 200),
      height: Number(el.getAttribute("data-height")) || 180,
      series: series,
      axes: [axis, Object.assign({}, axis, { size: 84, values: function (u, vals) { return vals.map(function (v) { return fmt(v, unit); }); } })],
      scales: { x: { time: true } },
      cursor: { drag: { x: true, y: false, setScale: false } },
      hooks: { setSelect: [zoomTo] },
      plugins: [thresholdsPlugin(thresholds)],
      legend: { live: true },
    };
    if (utc) opts.tzDate = function (ts) { return uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); };
    return new uPlot(opts, [xs].concat(columns), el);
  }

  function render(el) {
    var fig = el.closest("figure");
    var specs = JSON.parse(el.getAttribute("data-series"));
    var thresholds = JSON.parse(el.getAttribute("data-thresholds") || "[]");
    var unit = el.getAttribute("data-unit");
    var startS = Number(body.getAttribute("data-start")) / 1000;
    var endS = Number(body.getAttribute("data-end")) / 1000;
    var step = pickStep(endS - startS, el.clientWidth || 400);
    var start = Math.floor(startS / step) * step, end = Math.floor(endS / step) * step;
    var n = Math.round((end - start) / step) + 1;
    var xs = [];
    for (var i = 0; i < n; i++) xs.push(start + i * step);
    Promise.all(specs.map(function (s) { return query(expand(s.expr, step), start, end, step); })).then(function (results) {
      var names = [], columns = [];
      results.forEach(function (result, k) {
        result.forEach(function (r) {
          var col = new Array(n).fill(null);
          r.values.forEach(function (p) {
            var idx = Math.round((p[0] - start) / step), v = parseValue(p[1]);
            if (idx >= 0 && idx < n) col[idx] = isFinite(v) ? v : null;
          });
          names.push(seriesName(r.metric, specs[k].legend, specs[k].name));
          columns.push(col);
        });
      });
      if (!names.length) { message(el, "No data in this time range"); return; }
      var plot = draw(el, xs, names, columns, unit, thresholds);
      el.setAttribute("data-drawn", String(names.length));
      performance.mark("vigil-chart-drawn"); // bench/ui.py reads the first and the last
      fillTable(fig, names, columns, unit);
      var redraw = function () { plot.destroy(); plot = draw(el, xs, names, columns, unit, thresholds); };
      window.addEventListener("vigil:theme", redraw);
      var pending = null;
      window.addEventListener("resize", function () {
        clearTimeout(pending);
        pending = setTimeout(function () { plot.setSize({ width: Math.max(el.clientWidth, 200), height: plot.height }); }, 150);
      });
    }).catch(function (err) {
      message(el, "Query failed: " + err.message, "error");
      el.setAttribute("data-drawn", "error");
    });
  }

  document.querySelectorAll(".chart[data-series]").forEach(render);
})();
