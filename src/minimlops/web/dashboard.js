// The dashboard: polls the public API every 2 s and redraws. No private endpoints.
"use strict";
const charts = {};
let project = { task: "binary", primary_metric: "accuracy" };
// The version table's columns follow the task: its primary metric, one more, the baseline.
const SECOND = { binary: "roc_auc", multiclass: "macro_f1", regression: "mae" };

async function get(path) {
  const r = await call(path, { headers: { Accept: "application/json" } });
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
}

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.append(td);
  return td;
}

function link(td, href, text, label) {
  const a = document.createElement("a");
  a.href = href; a.textContent = text; a.setAttribute("aria-label", label);
  td.append(a);
  return a;
}

function num(v, digits = 3) { return typeof v === "number" ? v.toFixed(digits) : "—"; }

function renderStatus(s) {
  document.getElementById("champion").textContent = s.champion ? `version ${s.champion.version}` : "none yet";
  document.getElementById("serving").textContent = s.serving ? `version ${s.serving}` : "nothing yet";
  const tables = document.getElementById("tables");
  tables.replaceChildren();
  for (const [name, count] of Object.entries(s.tables)) {
    const tr = document.createElement("tr");
    cell(tr, name); cell(tr, count.toLocaleString());
    tables.append(tr);
  }
  const queues = document.getElementById("queues");
  queues.replaceChildren();
  for (const q of s.queues) {
    const tr = document.createElement("tr");
    cell(tr, q.subscription); cell(tr, q.pending + q.leased); cell(tr, q.acked); cell(tr, q.dead_lettered);
    queues.append(tr);
  }
}

function metricsHeader() {
  const primary = project.primary_metric, second = SECOND[project.task];
  const cols = ["version", "algorithm", primary, ...(second !== primary ? [second] : []),
                `baseline (${primary})`, project.task === "regression" ? "live MAE" : "live accuracy", "decision"];
  const tr = document.getElementById("models-head");
  tr.replaceChildren(...cols.map((c) => { const th = document.createElement("th"); th.textContent = c.replaceAll("_", " "); return th; }));
}

function baselineOf(v, metric) {
  const b = v.baseline || {};
  const task = typeof b.task === "object" && b.task ? b.task : {};
  return task[metric] !== undefined ? task[metric] : (metric === "accuracy" ? b.gender_only_accuracy : undefined);
}

function renderModels(m) {
  const body = document.getElementById("models");
  body.replaceChildren();
  const primary = project.primary_metric, second = SECOND[project.task];
  for (const v of [...m.versions].reverse()) {
    const tr = document.createElement("tr");
    link(cell(tr, ""), `/models/${encodeURIComponent(v.version)}`,
         v.version + (v.champion ? " ★ champion" : ""), `evaluation of version ${v.version}`);
    cell(tr, v.algorithm);
    cell(tr, num(v.metrics[primary]));
    if (second !== primary) cell(tr, num(v.metrics[second]));
    cell(tr, num(baselineOf(v, primary)));
    const live = project.task === "regression" ? v.live_mae : v.live_accuracy;
    cell(tr, live === undefined || live === null ? "no labels yet" : num(live));
    const d = v.decision || {};
    cell(tr, `${d.promote ? "promoted" : "kept out"}: ${d.reason || ""}`);
    body.append(tr);
  }
}

function renderTimeline(events) {
  const body = document.getElementById("timeline");
  body.replaceChildren();
  for (const e of events) {
    const tr = document.createElement("tr");
    cell(tr, new Date(e.at).toLocaleString());
    cell(tr, e.kind, "kind " + e.kind.replace(" ", "-"));
    const subject = cell(tr, e.version ? "" : e.subject);
    if (e.version) link(subject, `/models/${encodeURIComponent(e.version)}`, e.subject, `evaluation of ${e.subject}`);
    const td = cell(tr, e.detail || "");
    if (e.report) {
      const a = document.createElement("a");
      a.href = e.report; a.textContent = " report";
      td.append(a);
    }
    body.append(tr);
  }
}

function drawChart(id, series, data, opts = {}) {
  const el = document.getElementById(id);
  const width = Math.max(260, el.clientWidth || 300);
  if (charts[id]) { charts[id].setData(data); charts[id].setSize({ width, height: 200 }); return; }
  // A lone point would stretch the time axis over years: pad it by ten minutes.
  const x = { time: true, range: (u, min, max) => (min === max ? [min - 600, max + 600] : [min, max]) };
  charts[id] = new uPlot({ width, height: 200, series: [{}, ...series], axes: [{}, { size: 50 }],
                           ...opts, scales: { ...(opts.scales || {}), x } }, data, el);
}

function lastMinutes(stats, n = 30) {
  // One point per minute for the last n minutes; minutes without traffic are 0 / gaps.
  const byMinute = new Map(stats.minutes.map((m) => [m.minute, m]));
  const now = Math.floor(Date.now() / 60000) * 60;
  const xs = [], preds = [], p50 = [], p99 = [];
  for (let t = now - (n - 1) * 60; t <= now; t += 60) {
    const m = byMinute.get(t);
    xs.push(t); preds.push(m ? m.predictions : 0);
    p50.push(m ? m.p50_ms : null); p99.push(m ? m.p99_ms : null);
  }
  return { xs, preds, p50, p99 };
}

function renderServing(stats) {
  const { xs, preds, p50, p99 } = lastMinutes(stats);
  drawChart("chart-predictions", [{ label: "predictions", stroke: "#0b57d0", fill: "rgba(11,87,208,.1)" }],
            [xs, preds]);
  drawChart("chart-latency", [{ label: "p50 ms", stroke: "#137333", spanGaps: false, points: { show: true, size: 6 } },
                              { label: "p99 ms", stroke: "#b3261e", spanGaps: false, points: { show: true, size: 6 } }], [xs, p50, p99]);
  document.getElementById("chart-predictions").dataset.points = String(preds.filter((v) => v > 0).length);
}

const COLORS = ["#0b57d0", "#137333", "#b3261e", "#e37400", "#8430ce", "#007b83"];

function renderAccuracy(points) {
  const na = document.getElementById("live-accuracy-na");
  na.hidden = points.length > 0;
  if (!points.length) return;
  const xs = [...new Set(points.map((p) => p.at))].sort((a, b) => a - b);
  const versions = [...new Set(points.map((p) => p.version))];
  const data = [xs, ...versions.map((v) => xs.map((x) => {
    const p = points.find((q) => q.version === v && q.at === x);
    return p ? (project.task === "regression" ? p.mae : p.accuracy) : null;
  }))];
  const series = versions.map((v, i) => ({ label: `version ${v}`, stroke: COLORS[i % COLORS.length],
                                           points: { show: true, size: 6 }, spanGaps: true }));
  const key = "live-accuracy:" + versions.join(",");
  if (charts["live-accuracy"] && charts["live-accuracy"].key !== key) {
    charts["live-accuracy"].destroy(); delete charts["live-accuracy"];
  }
  const y = project.task === "regression" ? {} : { range: [0, 1] };
  drawChart("live-accuracy", series, data, { scales: { x: { time: true }, y } });
  charts["live-accuracy"].key = key;
}

function renderDrift(m) {
  const d = m.drift;
  document.getElementById("drift-summary").textContent = d.features.length
    ? `champion ${d.champion} · last ${d.window.rows} predictions vs its ${d.reference_rows} training rows · warn at PSI ${d.thresholds.psi_warn}, drift at ${d.thresholds.psi_drift}`
    : `not available yet: ${d.status}`;
  const body = document.getElementById("drift");
  body.replaceChildren();
  for (const f of d.features) {
    const tr = document.createElement("tr");
    cell(tr, f.feature); cell(tr, num(f.psi));
    const td = document.createElement("td");
    td.innerHTML = `<div class="gauge" style="width:8rem"><div style="width:${Math.min(100, (f.psi || 0) / 0.5 * 100)}%"></div></div>`;
    tr.append(td);
    cell(tr, f.status, "kind " + f.status);
    body.append(tr);
  }
  const triggers = document.getElementById("triggers");
  triggers.replaceChildren();
  for (const t of m.triggers.slice(0, 10)) {
    const tr = document.createElement("tr");
    cell(tr, new Date(t.requested_at).toLocaleString()); cell(tr, t.kind, "kind"); cell(tr, t.reason);
    triggers.append(tr);
  }
}

let rounds = 0;

async function refresh() {
  if (asking) return;  // the key prompt is open: the rounds wait, not pile up
  try {
    // /monitoring scans the champion's training rows: every 30 s, not every 2 s.
    const heavy = rounds++ % 15 === 0;
    const [status, models, events, serving, monitoring] = await Promise.all([
      get("/status"), get("/models"), get("/events?limit=50"), get("/stats/serving"),
      heavy ? get("/monitoring") : Promise.resolve(null)]);
    renderStatus(status); renderModels(models); renderTimeline(events); renderServing(serving);
    if (monitoring) { renderAccuracy(monitoring.accuracy_over_time); renderDrift(monitoring); }
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (err) {
    document.getElementById("updated").textContent = "cannot reach the server: " + err.message;
  }
}

async function start() {
  try {
    project = await get("/project");
  } catch (err) { /* the defaults above; refresh() reports an unreachable server */ }
  const live = project.task === "regression" ? "Live MAE over time (mean absolute error)" : "Live accuracy over time";
  document.getElementById("live-title").textContent = live;
  document.getElementById("project-name").textContent =
    `${project.name || ""} · ${project.task || ""} · target ${project.target || ""}`;
  metricsHeader();
  refresh();
  setInterval(refresh, 2000);
}

start();
