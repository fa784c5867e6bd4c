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

function num(v, digits = 3) { return readable(v, digits); }

// The live chart's metric: accuracy, or MAE for a regression (in the target's units).
function liveMetric() {
  return project.task === "regression"
    ? { key: "mae", short: "MAE", long: "live MAE (mean absolute error)" }
    : { key: "accuracy", short: "accuracy", long: "live accuracy" };
}

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
    // Pub/Sub counts its backlogs in Cloud Monitoring only: a dash, never a 0 that is not known
    const n = (v) => (v === null || v === undefined ? "—" : v);
    cell(tr, q.subscription); cell(tr, q.pending === null ? "—" : q.pending + q.leased);
    cell(tr, n(q.acked)); cell(tr, n(q.dead_lettered));
    queues.append(tr);
  }
  renderAlerts(s.alerts || {});
}

// Where alerts go, and whether they get there: a webhook that keeps failing shows here.
function renderAlerts(a) {
  const el = document.getElementById("alerts");
  if (!a.webhooks || !a.webhooks.length) {
    el.textContent = "Alerts: off (MINIMLOPS_ALERT_WEBHOOKS is unset)";
    el.className = "muted";
    return;
  }
  let text = `Alerts to ${a.webhooks.join(", ")}: ` +
    (a.uncounted ? a.uncounted : `${a.sent || 0} sent, ${a.waiting || 0} waiting`);
  if (a.failed) text += `, ${a.failed} undelivered after every retry`;
  if (a.last_error) text += ` — last error: ${a.last_error}`;
  el.textContent = text;
  el.className = a.failed || a.last_error ? "error" : "muted";
}

function metricsHeader() {
  const primary = project.primary_metric, second = SECOND[project.task];
  const cols = ["version", "algorithm", `${primary} on its VALIDATION`, `${primary} on its TEST, served fit`,
                ...(second !== primary ? [`${second} on its VALIDATION`] : []),
                `baseline (${primary})`, `live ${liveMetric().short}`, "decision"];
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
    // each version's figure is on its own VALIDATION rows, which move as data
    // arrives: the gate compared it with the champion of the day on the same rows
    const own = cell(tr, num(v.metrics[primary]));
    const cmp = v.champion_compared || {};
    const theirs = (cmp.evaluation || {})[primary];
    if (cmp.version && theirs !== undefined && theirs !== null) {
      // both on the gate's rows: VALIDATION and labelled predictions, or the part of
      // them the champion's fit never learned from
      const mine = ((cmp.challenger || v.evaluation || {})[primary]);
      const note = document.createElement("small");
      note.className = "muted";
      note.textContent = `on the gate's rows: ${num(mine)} against champion ${cmp.version}'s ${num(theirs)}`;
      own.append(document.createElement("br"), note);
    }
    // the model that serves, on held-back rows nothing learned from: what the
    // VALIDATION figure (the TRAIN-only fit's, on rows selection looked at) promises
    const test = (v.test || {})[primary];
    const onTest = cell(tr, test === undefined || test === null ? "—" : num(test), "test");
    if (v.test && v.test.rows) onTest.title = `on ${v.test.rows.toLocaleString()} TEST rows`;
    if (second !== primary) cell(tr, num(v.metrics[second]));
    cell(tr, num(baselineOf(v, primary)));
    const live = project.task === "regression" ? v.live_mae : v.live_accuracy;
    let shown = live === undefined || live === null
      ? (v.predicted_after_landing ? "no label counts yet" : "no labels yet") : num(live);
    if (v.label_coverage !== null && v.label_coverage !== undefined && live !== null && live !== undefined) {
      // how many labels: one label's error is no live figure (0% would hide it)
      const share = 100 * v.label_coverage;
      shown += ` (${(v.labelled || 0).toLocaleString()} labelled, ${share > 0 && share < 1 ? "<1" : Math.round(share)}%)`;
    }
    // a prediction made after its row landed may be answered from what was learnt
    if (v.predicted_after_landing) shown += `; ${leftOut(v.predicted_after_landing, v.labelled)}`;
    // classification: what the served probabilities say, before (and beside) the labels
    if (v.estimated) shown += `; estimated ${num(v.estimated.accuracy)} on the ${v.estimated.rows} newest`;
    cell(tr, shown);
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
    // a landed file: where it is (its path, on the local backend); its id (gs://bucket/name) on hover
    const subject = cell(tr, e.version ? "" : (e.where || e.subject), "wrap");
    if (e.where && e.where !== e.subject) subject.title = e.subject;
    if (e.version) link(subject, `/models/${encodeURIComponent(e.version)}`, e.subject, `evaluation of ${e.subject}`);
    const td = cell(tr, e.detail || "");
    if (e.report) {
      const a = document.createElement("a");
      a.href = e.report; a.textContent = "the rows' report (JSON)";
      td.append(" · ", a);  // set apart: the detail's sentence ends before it
    }
    body.append(tr);
  }
}

function drawChart(id, series, data, opts = {}) {
  const el = document.getElementById(id);
  const width = Math.max(260, el.clientWidth || 300);
  if (charts[id]) { charts[id].setData(data); charts[id].setSize({ width, height: 200 }); return; }
  charts[id] = new uPlot({ width, height: 200, series: [{}, ...series], axes: [{}, { size: fitAxis }],
                           ...opts, scales: { ...(opts.scales || {}), x: { time: true, range: timeRange } } }, data, el);
}

// The time axis spans the points; a lone point gets its day (uPlot would
// stretch a single time over 1,000 days: 2027-2029 for one December day).
function timeRange(u, min, max) {
  const xs = u.data[0] || [];
  if (!xs.length || xs[0] !== xs[xs.length - 1]) return [min, max];
  const day = new Date(xs[0] * 1000);
  day.setHours(0, 0, 0, 0);
  const next = new Date(day);
  next.setDate(day.getDate() + 1);
  return [day.getTime() / 1000, next.getTime() / 1000];
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
    return p ? p[liveMetric().key] : null;
  }))];
  const series = versions.map((v, i) => ({ label: `version ${v}`, stroke: COLORS[i % COLORS.length],
                                           points: { show: true, size: 6 }, spanGaps: true,
                                           value: (u, y) => (y === null || y === undefined ? "—" : readable(y)) }));
  const key = "live-accuracy:" + versions.join(",");
  if (charts["live-accuracy"] && charts["live-accuracy"].key !== key) {
    charts["live-accuracy"].destroy(); delete charts["live-accuracy"];
  }
  const y = project.task === "regression" ? {} : { range: [0, 1] };
  drawChart("live-accuracy", series, data, { scales: { y } });
  charts["live-accuracy"].key = key;
}

function renderDrift(m) {
  const d = m.drift;
  document.getElementById("drift-summary").textContent = d.features.length
    ? `champion ${d.champion} · last ${d.window.rows} predictions vs its ${d.reference_rows} training rows · warn at PSI ${d.thresholds.psi_warn}, drift at ${d.thresholds.psi_drift}, each over what identical data gives by chance · retraining for drift on a feature with ${Math.round(100 * d.thresholds.min_importance)}% or more of the model's ${d.importance || "importance"}`
    : `not available yet: ${d.status}`;
  const body = document.getElementById("drift");
  body.replaceChildren();
  // what a share is of: the champion's mean |attribution| (or, for versions
  // without them, its permutation importance) on VALIDATION
  const share = (d.importance || "").startsWith("mean |attribution|") ? "attributions" : "importance";
  for (const f of d.features) {
    const tr = document.createElement("tr");
    const name = cell(tr, f.feature, "wrap");
    // whether the model needs this feature: its (and its derived features' inputs') importance share
    if (f.matters !== null && f.matters !== undefined) {
      const note = document.createElement("small");
      note.className = "muted";
      // under 10 %, a decimal: 4.9 % (barely used) beside 5.1 % (used); a date part's is the whole date's
      const pct = 100 * f.importance_share;
      const whose = f.derived_from ? ` (of ${f.importance_of}, which it is made from)`
        : f.importance_of ? ` (all of ${f.importance_of})` : "";
      note.textContent = `${f.matters ? "used" : "barely used"}: ${pct < 10 ? pct.toFixed(1) : Math.round(pct)}% of ${share}${whose}${f.importance_with ? " with " + f.importance_with.join(", ") : ""}`;
      name.append(document.createElement("br"), note);
    }
    cell(tr, num(f.psi));
    const td = document.createElement("td");
    td.innerHTML = `<div class="gauge psi"><div style="width:${Math.min(100, (f.psi || 0) / 0.5 * 100)}%"></div></div>`;
    td.className = "meter";
    tr.append(td);
    cell(tr, f.status, "kind " + f.status);
    body.append(tr);
  }
  const triggers = document.getElementById("triggers");
  triggers.replaceChildren();
  for (const t of m.triggers.slice(0, 10)) {
    const tr = document.createElement("tr");
    // a trigger on rows the champion already learned from asked for no training
    const kept = (t.details || {}).retrained === false
      ? ` (not retrained: no rows landed since version ${t.details.version} learned from them)` : "";
    cell(tr, new Date(t.requested_at).toLocaleString()); cell(tr, t.kind, "kind"); cell(tr, t.reason + kept);
    triggers.append(tr);
  }
}

let rounds = 0;
// /monitoring scans the champion's training rows (on BigQuery, billed): every
// 30 s (15 rounds), not every 2 s; one request at a time, however long it takes;
// and within seconds when /models counts the first labels, so the chart never
// says there are none beside a labelled version. A failure waits for the next
// due round and never stops the other panels.
const monitoring = { startedAt: -Infinity, busy: false, labelled: null };

const labelledIn = (versions) => versions.reduce((n, v) => n + (v.labelled || 0), 0);

async function refreshMonitoring(round) {
  monitoring.busy = true; monitoring.startedAt = round;
  try {
    const m = await get("/monitoring");
    monitoring.labelled = labelledIn(m.versions);
    renderAccuracy(m.accuracy_over_time); renderDrift(m);
  } catch (err) {
    /* said by the next full round if the server is gone; tried again when due */
  } finally {
    monitoring.busy = false;
  }
}

async function refresh() {
  if (asking) return;  // the key prompt is open: the rounds wait, not pile up
  const round = rounds++;
  if (!monitoring.busy && round - monitoring.startedAt >= 15) refreshMonitoring(round);
  try {
    const [status, models, events, serving] = await Promise.all([
      get("/status"), get("/models"), get("/events?limit=50"), get("/stats/serving")]);
    renderStatus(status); renderModels(models); renderTimeline(events); renderServing(serving);
    const first = !monitoring.labelled && labelledIn(models.versions) > 0;
    if (first && !monitoring.busy && round - monitoring.startedAt >= 2) refreshMonitoring(round);
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (err) {
    document.getElementById("updated").textContent = "cannot reach the server: " + err.message;
  }
}

async function start() {
  try {
    project = await get("/project");
  } catch (err) { /* the defaults above; refresh() reports an unreachable server */ }
  const live = liveMetric();
  document.getElementById("live-title").textContent = project.task === "regression"
    ? "Live MAE over time (mean absolute error)" : "Live accuracy over time";
  const chart = document.getElementById("live-accuracy");
  chart.setAttribute("aria-label", `${live.long} per model version over time`);
  chart.dataset.metric = live.key;
  document.getElementById("project-name").textContent =
    `${project.name || ""} · ${project.task || ""} · target ${project.target || ""}`;
  metricsHeader();
  refresh();
  setInterval(refresh, 2000);
}

start();
