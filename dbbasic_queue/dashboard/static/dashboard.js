/* dbbasic-queue dashboard: refreshes the overview from its JSON endpoint and draws the
 * throughput charts (or the 24-hour chart) as SVG, and keeps the jobs list fresh. Values from the queue are only ever set as text (textContent,
 * attribute values), never parsed as HTML. */
(function () {
  "use strict";

  var SVG = "http://www.w3.org/2000/svg";
  var STATUSES = ["pending", "processing", "completed", "failed", "cancelled"];
  var body = document.body;
  var base = body.getAttribute("data-base") || "";

  function fmt(n) { return Number(n).toLocaleString("en-US"); }

  function age(seconds) {
    seconds = Math.abs(seconds);
    if (seconds < 60) { return Math.round(seconds) + "s"; }
    if (seconds < 3600) { return Math.round(seconds / 60) + "m"; }
    if (seconds < 86400) { return (seconds / 3600).toFixed(1) + "h"; }
    return (seconds / 86400).toFixed(1) + "d";
  }

  function utc(ts) { return new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 19); }

  function el(tag, text, attrs) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    return node;
  }

  function jobsUrl(params) {
    var query = new URLSearchParams();
    Object.keys(params).forEach(function (key) { if (params[key]) { query.set(key, params[key]); } });
    var text = query.toString();
    return base + "/jobs" + (text ? "?" + text : "");
  }

  function jobUrl(id) { return base + "/jobs/" + encodeURIComponent(id); }

  function setField(name, text) {
    var nodes = document.querySelectorAll('[data-field="' + name + '"]');
    for (var i = 0; i < nodes.length; i++) { nodes[i].textContent = text; }
  }

  function svg(tag, attrs, text) {
    var node = document.createElementNS(SVG, tag);
    Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function niceMax(value) {
    if (value <= 4) { return 4; }
    var step = Math.pow(10, Math.floor(Math.log10(value)));
    var nice = [1, 2, 2.5, 5, 10].map(function (f) { return f * step; })
      .filter(function (candidate) { return candidate >= value; })[0];
    return nice;
  }

  /* Stacked bars, one per span of series.step seconds from series.starts; kinds are the
   * series drawn, bottom first. A label under every labelEvery-th bar. */
  function drawChart(container, series, kinds, labelEvery, what) {
    var count = series.starts.length, step = series.step;
    var width = 1100, height = 230, left = 44, top = 12, bottom = 28;
    var plot = height - top - bottom, slot = (width - left - 8) / count;
    var totals = series.starts.map(function (_, i) {
      return kinds.reduce(function (sum, kind) { return sum + series[kind][i]; }, 0);
    });
    var max = niceMax(Math.max.apply(null, totals.concat([1])));
    var scale = function (n) { return plot * n / max; };
    var label = function (start) {
      return step >= 3600 && labelEvery >= 24 ? utc(start).slice(5, 10) : utc(start).slice(11, 16);
    };
    var root = svg("svg", { viewBox: "0 0 " + width + " " + height, role: "img",
      "aria-label": what });
    [0, 0.5, 1].forEach(function (fraction) {
      var y = top + plot - plot * fraction;
      root.appendChild(svg("line", { x1: left, x2: width - 8, y1: y, y2: y, "class": "grid-line" }));
      root.appendChild(svg("text", { x: left - 6, y: y + 4, "class": "axis", "text-anchor": "end" },
        fmt(max * fraction)));
    });
    for (var i = 0; i < count; i++) {
      var x = left + i * slot + (slot > 6 ? 2 : 0), w = Math.max(1, slot - (slot > 6 ? 4 : 1));
      var start = series.starts[i], y = top + plot;
      var group = svg("g", { "class": "hour" });
      group.appendChild(svg("title", {}, utc(start).slice(step >= 3600 ? 5 : 11, 16) + "\u2013" +
        utc(start + step).slice(11, 16) + " UTC: " + kinds.map(function (kind) {
          return fmt(series[kind][i]) + " " + kind;
        }).join(", ")));
      group.appendChild(svg("rect", { x: x, y: top, width: w, height: plot, "class": "hover" }));
      kinds.forEach(function (kind) {
        var tall = scale(series[kind][i]);
        if (tall > 0) {
          y -= tall;
          group.appendChild(svg("rect", { x: x, y: y, width: w, height: tall, "class": "bar " + kind }));
        }
      });
      root.appendChild(group);
      if (i % labelEvery === 0) {
        root.appendChild(svg("text", { x: x + w / 2, y: height - 8, "class": "axis",
          "text-anchor": "middle" }, label(start)));
      }
    }
    container.replaceChildren(root);
  }

  function sum(values) { return values.reduce(function (a, b) { return a + b; }, 0); }

  function drawCharts(data, chartNode) {
    var kinds = ["completed", "failed", "retried"];
    var throughput = data.throughput;
    if (!throughput || chartNode.getAttribute("data-series") !== "minutes") {
      var chart = data.chart;
      drawChart(chartNode, { starts: chart.hour_starts, step: 3600, completed: chart.completed,
        failed: chart.failed }, ["completed", "failed"], 3,
        "Completed and failed jobs per hour over the last 24 hours");
      setField("completed_24h", fmt(data.completed_24h));
      setField("failed_24h", fmt(data.failed_24h));
      return;
    }
    drawChart(chartNode, throughput.minutes, kinds, 10,
      "Jobs completed, failed and retried per minute over the last hour");
    var hoursNode = document.getElementById("chart-hours");
    if (hoursNode) {
      drawChart(hoursNode, throughput.hours, kinds, 24,
        "Jobs completed, failed and retried per hour over the last days");
      hoursNode.setAttribute("data-drawn", String(data.now));
    }
    kinds.forEach(function (kind) {
      setField("throughput.hour." + kind, fmt(sum(throughput.minutes[kind])));
      setField("throughput.day." + kind, fmt(sum(throughput.hours[kind].slice(-24))));
    });
  }

  function byTypeRows(tbody, byType) {
    // A row's Pause or Resume cell holds a form with its CSRF token, made by the server:
    // kept from the row of the same type, not rebuilt.
    var pauseCells = {}, withPause = false;
    tbody.querySelectorAll("tr").forEach(function (row) {
      var head = row.querySelector("th"), cell = row.querySelector("td form") &&
        row.querySelector("td:last-child");
      if (head && cell) { pauseCells[head.textContent] = cell; withPause = true; }
    });
    withPause = withPause || !!document.querySelector("#by-type thead th:nth-child(7)");
    var rows = Object.keys(byType).map(function (type) {
      var row = el("tr");
      var head = el("th");
      head.appendChild(el("a", type, { href: jobsUrl({ type: type }) }));
      row.appendChild(head);
      STATUSES.forEach(function (status) {
        var cell = el("td", null, { "class": "num" });
        cell.appendChild(el("a", fmt(byType[type][status]),
          { href: jobsUrl({ type: type, status: status }) }));
        row.appendChild(cell);
      });
      if (withPause) { row.appendChild(pauseCells[type] || el("td")); }
      return row;
    });
    if (!rows.length) { rows = [emptyRow(withPause ? 7 : 6, "No jobs yet.")]; }
    tbody.replaceChildren.apply(tbody, rows);
  }

  function nextRunRows(tbody, runs, now) {
    var rows = runs.map(function (run) {
      var row = el("tr"), idCell = el("td");
      idCell.appendChild(el("a", run.id, { href: jobUrl(run.id), "class": "id" }));
      row.appendChild(idCell);
      row.appendChild(el("td", run.type));
      var cell = el("td");
      cell.appendChild(el("time", utc(run.run_at)));
      cell.appendChild(el("span", "in " + age(run.run_at - now), { "class": "when" }));
      row.appendChild(cell);
      return row;
    });
    if (!rows.length) { rows = [emptyRow(3, "Nothing scheduled.")]; }
    tbody.replaceChildren.apply(tbody, rows);
  }

  function emptyRow(columns, text) {
    var row = el("tr");
    row.appendChild(el("td", text, { colspan: String(columns), "class": "empty" }));
    return row;
  }

  function update(data, chartNode) {
    STATUSES.forEach(function (status) { setField("status." + status, fmt(data.by_status[status])); });
    setField("latency", data.latency_seconds === null ? "no job waiting" : age(data.latency_seconds));
    setField("jobs", fmt(data.jobs));
    var corrupt = document.querySelector('[data-field="corrupt"]');
    if (corrupt) {
      corrupt.hidden = !data.corrupt_lines;
      corrupt.textContent = fmt(data.corrupt_lines) + " corrupt lines in the file, left as " +
        "they are: see the worker's log, fix or remove them by hand.";
    }
    byTypeRows(document.querySelector("#by-type tbody"), data.by_type);
    nextRunRows(document.querySelector("#next-runs tbody"), data.next_runs, data.now);
    drawCharts(data, chartNode);
    setField("updated", "Updated at " + utc(data.now).slice(11) + " UTC; refreshes every " +
      body.getAttribute("data-refresh") + " s.");
    chartNode.setAttribute("data-drawn", String(data.now));
  }

  function startOverview() {
    var chartNode = document.getElementById("chart");
    if (!chartNode) { return; }
    var api = chartNode.getAttribute("data-api");
    var seconds = Math.max(1, Number(body.getAttribute("data-refresh")) || 5);
    var busy = false;
    function refresh() {
      if (busy || document.hidden) { return; }
      busy = true;
      fetch(api, { credentials: "same-origin", cache: "no-store" })
        .then(function (response) {
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          return response.json();
        })
        .then(function (data) { update(data, chartNode); })
        .catch(function (error) {
          setField("updated", "Could not refresh (" + error.message + "); trying again.");
        })
        .then(function () { busy = false; });
    }
    refresh();
    window.setInterval(refresh, seconds * 1000);
  }

  /* The jobs' list, fetched again as it is (same address, same filters) and its rows, count
   * and pager put in place of the old ones; the boxes ticked stay ticked wherever their job
   * is still listed. The new rows come from the dashboard's own escaped HTML, parsed into a
   * separate document (DOMParser runs no script) and moved in as nodes. */
  function startJobs() {
    var toggle = document.getElementById("auto-refresh");
    if (!toggle || !document.querySelector("table.jobs")) { return; }
    var seconds = Math.max(1, Number(body.getAttribute("data-refresh")) || 5);
    var busy = false;
    var parts = ["table.jobs tbody", "#jobs-count", "nav.pager"];
    function refresh() {
      if (busy || document.hidden || !toggle.checked) { return; }
      busy = true;
      var ticked = new Set();
      document.querySelectorAll('input[name="id"][form="bulk"]:checked').forEach(function (box) {
        ticked.add(box.value);
      });
      fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
        .then(function (response) {
          if (!response.ok) { throw new Error("HTTP " + response.status); }
          return response.text();
        })
        .then(function (text) {
          var fresh = new DOMParser().parseFromString(text, "text/html");
          parts.forEach(function (selector) {
            var now = document.querySelector(selector), next = fresh.querySelector(selector);
            if (now && next) { now.replaceChildren.apply(now, Array.from(next.childNodes)); }
          });
          document.querySelectorAll('input[name="id"][form="bulk"]').forEach(function (box) {
            box.checked = ticked.has(box.value);
          });
          document.querySelector("table.jobs").setAttribute("data-refreshed", String(Date.now()));
        })
        .catch(function () { /* the next refresh tries again */ })
        .then(function () { busy = false; });
    }
    window.setInterval(refresh, seconds * 1000);
  }

  if (body.getAttribute("data-page") === "overview") { startOverview(); }
  if (body.getAttribute("data-page") === "jobs") { startJobs(); }
}());
