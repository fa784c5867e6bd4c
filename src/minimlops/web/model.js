// One model version's evaluation page: GET /models/{version} (JSON), drawn once.
// The numbers behind every plot were computed at training on VALIDATION rows.
"use strict";
const version = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
const COLORS = ["#0b57d0", "#b3261e", "#137333", "#e37400", "#8430ce", "#007b83"];
const plots = {};  // the uPlot of each chart, by its element's id

async function get(path) {
  const r = await call(path, { headers: { Accept: "application/json" } });
  if (!r.ok) throw new Error(`${path}: ${r.status} ${(await r.json().catch(() => ({}))).detail || ""}`);
  return r.json();
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function num(v, digits = 3) { return readable(v, digits); }  // 21,345 and 0.0123, no exponents

function sig(v) {  // two significant digits, grouped: 1,200, 0.034
  return typeof v === "number" && Number.isFinite(v) ? v.toLocaleString(undefined, { maximumSignificantDigits: 2 }) : "—";
}

function interval(ci) { return ci ? `${num(ci[0])}–${num(ci[1])}` : "—"; }

function section(title, wide = false) {
  const s = el("section", undefined, wide ? "wide" : "");
  s.append(el("h2", title));
  document.getElementById("plots").append(s);
  return s;
}

// A uPlot chart in a new section. series: [{label, stroke, points?, line?}], data: [xs, ...ys].
// opts.ticks: names for x = 0, 1, ... (a category axis: one tick each, whole bars at the edges).
function chart(title, id, xLabel, yLabel, series, data, opts = {}) {
  const s = section(title);
  const div = el("div", undefined, "chart");
  div.id = id; div.setAttribute("role", "img"); div.setAttribute("aria-label", title);
  s.append(div);
  const width = Math.max(280, s.clientWidth - 32 || 320);
  const ser = series.map((x) => ({
    label: x.label, stroke: x.stroke, width: x.line === false ? 0 : 2,
    paths: x.line === false ? () => null : x.bars ? uPlot.paths.bars({ size: [0.9] }) : undefined,
    fill: x.bars ? x.stroke + "55" : undefined,
    points: x.points ? { show: true, size: 5, fill: x.stroke, stroke: x.stroke } : { show: false },
  }));
  const ticks = opts.ticks;
  const xAxis = ticks
    ? { label: xLabel, size: 40, splits: () => ticks.map((_, i) => i), values: (u, at) => at.map((i) => ticks[i] ?? "") }
    : { label: xLabel, size: 40, space: 60 };
  const xScale = ticks ? { range: [-0.5, ticks.length - 0.5] } : {};
  plots[id] = new uPlot({ width, height: 240, series: [{ label: xLabel }, ...ser],
                         axes: [xAxis, { label: yLabel, size: fitAxis }],
                         scales: { x: { time: false, ...xScale, ...(opts.x || {}) }, y: opts.y || {} },
                         legend: { show: true, live: false } }, data, div);
  div.dataset.points = String(data[0].length);
  return s;
}

function scrolling(table) {  // a wide table scrolls inside its card
  const box = el("div", undefined, "scroll");
  box.append(table);
  return box;
}

function byX(points) { return [...points].sort((a, b) => a[0] - b[0]); }

function confusion(title, c) {
  const s = section(title);
  const table = el("table");
  table.setAttribute("aria-label", title);
  const head = el("tr");
  head.append(el("th", "actual ↓ / predicted →"), ...c.labels.map((l) => el("th", l)));
  table.append(head);
  const max = Math.max(1, ...c.matrix.flat());
  c.matrix.forEach((row, i) => {
    const tr = el("tr");
    tr.append(el("th", c.labels[i]));
    row.forEach((n, j) => {
      const td = el("td", String(n));
      const shade = Math.round(230 - 150 * (n / max));
      td.style.background = i === j ? `rgb(${shade},${240},${shade})` : (n ? `rgb(250,${shade + 10},${shade + 10})` : "");
      tr.append(td);
    });
    table.append(tr);
  });
  s.append(scrolling(table));
  s.dataset.cells = String(c.matrix.flat().length);
  if (c.threshold !== undefined) s.append(el("p", `at the serving threshold: probability ≥ ${c.threshold}`, "muted"));
  if (c.classes_left_out) s.append(el("p", `${c.classes_left_out} rare classes left out`, "muted"));
  s.id = "confusion";
}

function binaryPlots(r, metrics) {
  if (r.roc) {
    const pts = r.roc.points;
    chart(`ROC curve (AUC ${num(metrics.roc_auc)})`, "roc", "false positive rate", "true positive rate",
          [{ label: "model", stroke: COLORS[0] }, { label: "chance", stroke: "#9aa0a6" }],
          [pts.map((p) => p[0]), pts.map((p) => p[1]), pts.map((p) => p[0])], { x: { range: [0, 1] }, y: { range: [0, 1] } });
    const pr = r.precision_recall;
    chart(`Precision and recall (average precision ${num(pr.average_precision)})`, "precision-recall", "recall", "precision",
          [{ label: "model", stroke: COLORS[0] }, { label: "prevalence", stroke: "#9aa0a6" }],
          [pr.points.map((p) => p[0]), pr.points.map((p) => p[1]), pr.points.map(() => pr.prevalence)],
          { x: { range: [0, 1] }, y: { range: [0, 1] } });
  }
  const bins = r.reliability || [];
  if (bins.length) {
    chart("Reliability: predicted probability against observed rate", "reliability", "predicted probability", "observed rate",
          [{ label: "model", stroke: COLORS[0], points: true }, { label: "perfect", stroke: "#9aa0a6" }],
          [bins.map((b) => b.predicted), bins.map((b) => b.observed), bins.map((b) => b.predicted)],
          { x: { range: [0, 1] }, y: { range: [0, 1] } });
  }
  confusion("Confusion matrix (VALIDATION)", r.confusion);
}

function multiclassPlots(r) {
  confusion("Confusion matrix (VALIDATION)", r.confusion);
  const rows = r.per_class || [];
  const xs = rows.map((_, i) => i);
  const s = chart("Precision and recall per class", "per-class", "class", "",
                  [{ label: "precision", stroke: COLORS[0], bars: true }, { label: "recall", stroke: COLORS[1], points: true, line: false }],
                  [xs, rows.map((c) => c.precision), rows.map((c) => c.recall)],
                  { y: { range: [0, 1] }, ticks: rows.map((c) => String(c.class)) });
  const table = el("table");
  table.setAttribute("aria-label", "precision and recall per class");
  table.append(...rows.map((c) => {
    const tr = el("tr");
    tr.append(el("th", String(c.class)), el("td", `precision ${num(c.precision)}`), el("td", `recall ${num(c.recall)}`), el("td", `${c.support} rows`));
    return tr;
  }));
  s.append(scrolling(table));
}

function regressionPlots(r) {
  const pts = byX(r.scatter.points);
  chart(`Predicted against actual (${pts.length} of ${r.scatter.rows} VALIDATION rows)`, "predicted-actual", "actual", "predicted",
        [{ label: "rows", stroke: COLORS[0], points: true, line: false }, { label: "predicted = actual", stroke: "#9aa0a6" }],
        [pts.map((p) => p[0]), pts.map((p) => p[1]), pts.map((p) => p[0])]);
  const res = byX(r.residuals.points);
  chart("Residuals (predicted − actual) against predicted", "residuals", "predicted", "residual",
        [{ label: "rows", stroke: COLORS[1], points: true, line: false }, { label: "zero", stroke: "#9aa0a6" }],
        [res.map((p) => p[0]), res.map((p) => p[1]), res.map(() => 0)]);
  const e = r.errors, mids = e.counts.map((_, i) => (e.edges[i] + e.edges[i + 1]) / 2);
  chart("Distribution of the errors", "errors", "predicted − actual", "rows",
        [{ label: "rows", stroke: COLORS[0], bars: true }], [mids, e.counts]);
}

function renderMetrics(v) {
  const ci = (v.report || {}).intervals || {};
  const champ = ((v.champion_compared || {}).evaluation) || {};
  const base = (v.baseline || {}).task || {};
  const cmp = v.champion_compared || {};
  document.getElementById("champion-head").textContent = cmp.version ? `champion ${cmp.version}, same rows` : "champion, same rows";
  // compared on part of the rows (by time, those the champion's fit never saw): this
  // version's figures there, beside the champion's column
  const part = document.getElementById("compared-part");
  part.hidden = !cmp.challenger;
  if (cmp.challenger) {
    const primary = v.project.primary_metric;
    part.textContent = `${cmp.rows || "compared on part of the rows"} · there, ${primary.replaceAll("_", " ")} ` +
      `${num(cmp.challenger[primary])} for this version against ${num(champ[primary])} for champion ${cmp.version}`;
  }
  const body = document.getElementById("metrics");
  for (const [name, value] of Object.entries(v.metrics)) {
    if (name === "rows") continue;
    const tr = el("tr");
    tr.append(el("td", name.replaceAll("_", " "), name === v.project.primary_metric ? "kind" : ""),
              el("td", num(value)), el("td", interval(ci[name])), el("td", num(base[name])),
              el("td", num(champ[name])), el("td", num((v.evaluation || {})[name])),
              el("td", num((v.test || {})[name])));
    body.append(tr);
  }
  const live = v.live || {};
  document.getElementById("live").textContent = !live.labelled
    ? (live.predicted_after_landing ? "live: no labelled prediction counts yet" : "live: no prediction of this version has a true label yet")
    : live.live_mae !== null && live.live_mae !== undefined
      ? `live: MAE ${num(live.live_mae)} (95% ${interval(live.mae_interval_95)}), RMSE ${num(live.live_rmse)} on ${live.labelled} labelled predictions`
      : `live: accuracy ${num(live.live_accuracy)} (95% ${interval(live.interval_95)}) on ${live.labelled} labelled predictions`;
  if (live.predicted_after_landing) document.getElementById("live").textContent += `; ${leftOut(live.predicted_after_landing, live.labelled)}`;
}

function pairedWords(p) {
  if (!p) return "no champion to compare with: the first version is judged on its own checks";
  if (p.test === "wilcoxon") {
    return `Wilcoxon signed-rank test on the absolute errors, same rows: this version closer on ${p.challenger_closer}, ` +
           `the champion on ${p.champion_closer}; p = ${p.p_value.toPrecision(3)}`;
  }
  const better = p.challenger_only_right ?? "?", worse = p.champion_only_right ?? "?";
  return `McNemar's exact test, same rows: right where the champion was wrong on ${better}, wrong where it was right on ${worse}; ` +
         `p = ${typeof p.p_value === "number" ? p.p_value.toPrecision(3) : p.p_value}`;
}

function renderImportance(v) {
  renderAttributions(v);
  const imp = (v.report || {}).importance;
  const list = document.getElementById("importance");
  if (!imp) { document.getElementById("importance-note").textContent = "not stored for this version"; return; }
  const sp = (v.training || {}).split || {};
  const val = sp.validation || {};
  // by time, VALIDATION is a short window: its dates shuffled barely move, so
  // a date's trend shows in the attributions (from TRAIN's typical date), not here
  const byTime = sp.strategy === "time" && val.from
    ? `; the rows are split by time, and shuffling dates within VALIDATION's window (${val.from} to ${val.to}) cannot show a trend: a date column can matter little here and still move every prediction (see its mean |attribution|, measured from TRAIN's typical date)`
    : "";
  document.getElementById("importance-note").textContent =
    `how much ${imp.metric.replaceAll("_", " ")} gets worse when one column's values are shuffled (${imp.rows} VALIDATION rows, mean of 3 shuffles)${byTime}`;
  const max = Math.max(1e-12, ...imp.columns.map((c) => Math.abs(c.importance)));
  for (const c of imp.columns) {
    const li = el("li");
    const bar = el("div", undefined, "bar");
    const span = el("span", undefined, c.importance >= 0 ? "up" : "down");
    span.style.width = `${Math.abs(c.importance) / max * 50}%`;
    bar.append(span);
    li.append(el("span", c.column), bar, el("span", `${sig(c.importance)} ± ${sig(c.spread)}`));
    list.append(li);
  }
  list.dataset.columns = String(imp.columns.length);
}

// Beside how much the metric needs a column: how far it moves the raw output,
// on average, in the attributions' space (the prediction page's bars, which
// add up to the raw output), on the same VALIDATION rows.
function renderAttributions(v) {
  const att = (v.report || {}).attributions;
  const list = document.getElementById("attributions");
  if (!att) { document.getElementById("attributions-note").textContent = "not stored for this version"; return; }
  if (att.error) { document.getElementById("attributions-note").textContent = `not computed: ${att.error}`; return; }
  const space = att.space === "logit" ? "the predicted class's score (logit)" : att.space;
  document.getElementById("attributions-note").textContent =
    `how far each column moves the raw output, on average (mean |Shapley attribution| in ${space}` +
    `${att.calibrated ? ", before calibration" : ""}; ${att.rows} VALIDATION rows; ${att.method})`;
  const max = Math.max(1e-12, ...att.columns.map((c) => c.mean_abs));
  for (const c of att.columns) {
    const li = el("li");
    const bar = el("div", undefined, "bar");
    const span = el("span", undefined, "up");
    span.style.width = `${c.mean_abs / max * 50}%`;
    bar.append(span);
    li.append(el("span", c.column), bar, el("span", sig(c.mean_abs)));
    list.append(li);
  }
  list.dataset.columns = String(att.columns.length);
}

function renderSelection(v) {
  const sel = v.selection || {};
  const board = sel.leaderboard || [];
  const metric = sel.metric || v.project.primary_metric;
  const others = [...new Set(board.flatMap((e) => Object.keys(e.cv || {})))].filter((m) => m !== metric).slice(0, 3);
  const head = document.getElementById("leaderboard-head");
  head.append(...["candidate", `CV ${metric}`, ...others.map((m) => `CV ${m}`), "rounds", "s", ""].map((c) => el("th", c.replaceAll("_", " "))));
  const body = document.getElementById("leaderboard");
  for (const e of board) {
    const tr = el("tr", undefined, e.chosen ? "kind promoted" : "");
    const cv = e.cv || {};
    // an ensemble's row names its members and weights; its CV figures are cross-fitted
    // a forest's figures at random folds are out-of-bag: each row by the trees that did not draw it
    const name = e.members ? `ensemble of ${e.members.map((m) => `${m.weight.toFixed(2)} × ${m.name}`).join(" + ")}`
      : e.name + (e.estimate === "out-of-bag" ? " (out-of-bag)" : "");
    tr.append(el("td", name, "wrap"), el("td", num(cv[metric], 4)), ...others.map((m) => el("td", num(cv[m], 4))),
              el("td", e.rounds ? String(e.rounds) : ""), el("td", num(e.seconds, 1)),
              el("td", e.chosen ? "★ chosen" : (e.status === "scored" ? (e.note || "") : e.status)));
    if (e.members) tr.dataset.ensemble = "true";
    tr.title = e.settings || "";
    body.append(tr);
  }
  body.dataset.candidates = String(board.length);
  document.getElementById("selection-note").textContent = board.length
    ? `${sel.folds}-fold cross-validation${sel.folds_by === "time" ? " in time order (each fold scored on the rows after those it learnt from)" : sel.folds_by === "group" ? " by group" : ""}${sel.repeats > 1 ? `, repeated ${sel.repeats} times,` : ""} on ${(sel.rows || 0).toLocaleString()} TRAIN rows, on ${metric.replaceAll("_", " ")} (${sel.direction === "min" ? "lower" : "higher"} is better)${sel.budget_s ? `, ${Math.round(sel.seconds || 0)} s of a ${sel.budget_s >= 1 ? Math.round(sel.budget_s) : sel.budget_s} s budget (${sel.budget_from})` : ""}; chosen: ${sel.chosen} (${sel.settings})${sel.chosen !== "ensemble" && (sel.simpler_than || {}).name ? `, the simplest within one standard error of the best, ${sel.simpler_than.name}` : ""}`
    : "not recorded for this version";
  const w = sel.class_weight || {};
  document.getElementById("weights").textContent = w.weighted
    ? `minority class: ${(w.minority_share * 100).toFixed(1)}% of TRAIN (< ${w.threshold * 100}%): candidates with balanced class weights were tried; chosen ${w.chosen_weighted ? "with" : "without"} them`
    : "";
}

// How the rows were split: the figures below hold for rows like VALIDATION's.
function renderSplit(v) {
  const sp = (v.training || {}).split;
  const out = document.getElementById("split");
  if (!sp) { out.textContent = "split: at random by the row key (recorded before splits were)"; return; }
  const part = (name) => {
    const p = sp[name];
    if (!p) return "";
    if (p.groups !== undefined) return `${name.toUpperCase()} ${p.groups.toLocaleString()} groups` + (p.without_group ? ` (+${p.without_group} rows without one)` : "");
    return `${name.toUpperCase()} ${p.from || "?"} to ${p.to || "?"}` + (p.without_time ? ` (+${p.without_time} rows without a time)` : "");
  };
  const parts = ["train", "validation", "test"].map(part).filter(Boolean);
  if (!sp.test && sp.test_from && sp.strategy === "time") parts.push(`TEST from ${sp.test_from}`);
  out.textContent = `split ${sp.description}` + (parts.length ? ` · ${parts.join(" · ")}` : "");
  const list = document.getElementById("warnings");
  for (const w of v.warnings || []) list.append(el("li", `⚠ ${w.message}`, "warning"));
}

async function start() {
  try {
    const v = await get(`/models/${encodeURIComponent(version)}`);
    const p = v.project || {};
    document.title = `minimlops — version ${v.version}`;
    document.getElementById("project-name").textContent = `${p.name || ""} · ${p.task || ""} · target ${p.target || ""}`;
    document.getElementById("title").textContent =
      `Version ${v.version}${v.champion ? " ★ champion" : ""}: ${v.algorithm}`;
    const s = v.serving || {};
    document.getElementById("summary").textContent =
      `created ${new Date(v.created_at).toLocaleString()} · serves a fit on ${(v.fit_rows || 0).toLocaleString()} ${(v.fitted_on || ["TRAIN"]).join(" + ")} rows · ` +
      ((v.fitted_on || []).includes("VALIDATION") ? "figures from its TRAIN-only fit · " : "") +
      `evaluated on ${(v.metrics.rows || 0).toLocaleString()} VALIDATION rows · served by ${s.runtime || "?"}` +
      (typeof s.max_abs_diff === "number" ? ` (largest difference from the library ${s.max_abs_diff.toExponential(1)})` : "");
    renderSplit(v);
    const d = v.decision || {};
    const decision = document.getElementById("decision");
    decision.append(el("strong", d.promote ? "Promoted. " : "Kept the champion. "), document.createTextNode(d.reason || ""));
    const cal = v.calibration || {};
    document.getElementById("paired").textContent = pairedWords(d.paired) +
      (cal.reason ? ` · calibration ${cal.kept === true || cal.kept === "True" ? "kept" : "not kept"}: ${cal.reason}` : "");
    renderMetrics(v);
    const r = v.report;
    if (!r) {
      section("Plots").append(el("p", "this version was trained before plots were stored with versions", "na"));
    } else if (!r.rows) {
      section("Plots").append(el("p", "no VALIDATION rows to plot", "na"));
    } else if (r.task === "binary") binaryPlots(r, v.metrics);
    else if (r.task === "multiclass") multiclassPlots(r);
    else regressionPlots(r);
    renderImportance(v);
    renderSelection(v);
    document.body.dataset.ready = "true";
  } catch (err) {
    const f = document.getElementById("failure");
    f.hidden = false; f.textContent = `cannot show version ${version}: ${err.message}`;
    document.body.dataset.ready = "error";
  }
}

start();
