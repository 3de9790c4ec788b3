/* dbbasic-queue dashboard: refreshes the overview from its JSON endpoint and draws the
 * 24-hour chart as SVG. Values from the queue are only ever set as text (textContent,
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

  function drawChart(container, chart) {
    var hours = chart.hour_starts.length;
    var width = 1100, height = 230, left = 44, top = 12, bottom = 28;
    var plot = height - top - bottom, slot = (width - left - 8) / hours;
    var totals = chart.completed.map(function (c, i) { return c + chart.failed[i]; });
    var max = niceMax(Math.max.apply(null, totals.concat([1])));
    var scale = function (n) { return plot * n / max; };
    var root = svg("svg", { viewBox: "0 0 " + width + " " + height, role: "img",
      "aria-label": "Completed and failed jobs per hour over the last 24 hours" });
    [0, 0.5, 1].forEach(function (fraction) {
      var y = top + plot - plot * fraction;
      root.appendChild(svg("line", { x1: left, x2: width - 8, y1: y, y2: y, "class": "grid-line" }));
      root.appendChild(svg("text", { x: left - 6, y: y + 4, "class": "axis", "text-anchor": "end" },
        fmt(max * fraction)));
    });
    for (var i = 0; i < hours; i++) {
      var x = left + i * slot + 2, w = Math.max(1, slot - 4);
      var done = scale(chart.completed[i]), failed = scale(chart.failed[i]);
      var group = svg("g", { "class": "hour" });
      var start = chart.hour_starts[i];
      group.appendChild(svg("title", {}, utc(start).slice(11, 16) + "\u2013" +
        utc(start + 3600).slice(11, 16) + " UTC: " + fmt(chart.completed[i]) + " completed, " +
        fmt(chart.failed[i]) + " failed"));
      group.appendChild(svg("rect", { x: x, y: top, width: w, height: plot, "class": "hover" }));
      if (done > 0) {
        group.appendChild(svg("rect", { x: x, y: top + plot - done, width: w, height: done,
          "class": "bar completed" }));
      }
      if (failed > 0) {
        group.appendChild(svg("rect", { x: x, y: top + plot - done - failed, width: w,
          height: failed, "class": "bar failed" }));
      }
      root.appendChild(group);
      if (i % 3 === 0) {
        root.appendChild(svg("text", { x: x + w / 2, y: height - 8, "class": "axis",
          "text-anchor": "middle" }, utc(start).slice(11, 16)));
      }
    }
    container.replaceChildren(root);
  }

  function byTypeRows(tbody, byType) {
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
      return row;
    });
    if (!rows.length) { rows = [emptyRow(6, "No jobs yet.")]; }
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
    setField("completed_24h", fmt(data.completed_24h));
    setField("failed_24h", fmt(data.failed_24h));
    setField("jobs", fmt(data.jobs));
    var corrupt = document.querySelector('[data-field="corrupt"]');
    if (corrupt) {
      corrupt.hidden = !data.corrupt_lines;
      corrupt.textContent = fmt(data.corrupt_lines) + " corrupt lines in the file, left as " +
        "they are: see the worker's log, fix or remove them by hand.";
    }
    byTypeRows(document.querySelector("#by-type tbody"), data.by_type);
    nextRunRows(document.querySelector("#next-runs tbody"), data.next_runs, data.now);
    drawChart(chartNode, data.chart);
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

  if (body.getAttribute("data-page") === "overview") { startOverview(); }
}());
