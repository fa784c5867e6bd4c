// The prediction page, built from GET /project: a field per column (a select
// for allowed values; for a category without them, a select of the values
// training saw plus "another value", as the API takes an unseen category;
// number inputs with the ranges; date and datetime-local inputs (UTC) for
// dates and timestamps; defaults from a typical training row);
// POST /predict (logged, like any client), then /explain (attributions that
// add up to the raw output).
// The answer fits the task: a probability gauge (binary), each class's
// probability (multiclass), a number (regression).
"use strict";
let project = null;

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function field(col) {
  const box = el("div");
  const label = col.description ? `${col.name}: ${col.description}` : col.name;
  const zone = col.type === "timestamp" ? " (UTC)" : "";
  box.append(el("label", { for: col.name }, label + zone + (col.required ? "" : " (optional)")));
  const dflt = col.default === null || col.default === undefined ? "" : String(col.default);
  let input, other = null;
  const seen = col.allowed || col.type === "boolean" ? null : col.categories;
  if (seen && seen.length) {
    [input, other] = categoryField(col, seen, dflt);
  } else if (col.allowed || col.type === "boolean") {
    input = el("select", { id: col.name, name: col.name });
    const values = col.allowed || [true, false];
    if (!col.required) input.append(el("option", { value: "" }, "unknown"));
    for (const v of values) {
      const opt = el("option", { value: String(v) }, String(v));
      if (String(v) === dflt) opt.selected = true;
      input.append(opt);
    }
  } else if (col.type === "date") {  // sent as the input writes it: 2026-06-20
    input = el("input", { id: col.name, name: col.name, type: "date", value: dflt.slice(0, 10) });
  } else if (col.type === "timestamp") {  // in UTC, as the server reads a time without offset
    input = el("input", { id: col.name, name: col.name, type: "datetime-local", step: "1",
      value: utcLocal(dflt) });
  } else if (col.type === "integer" || col.type === "float") {
    input = el("input", { id: col.name, name: col.name, type: "number", value: dflt,
      step: col.type === "integer" ? "1" : "any", min: col.min, max: col.max,
      inputmode: col.type === "integer" ? "numeric" : "decimal" });
  } else {
    input = el("input", { id: col.name, name: col.name, type: "text", value: dflt, maxlength: col.max_length });
  }
  for (const x of [input, other]) if (x) x.setAttribute("aria-describedby", col.name + "-error");
  box.append(...[input, other].filter(Boolean), el("div", { class: "error", id: col.name + "-error" }));
  return box;
}

// A timestamp as a datetime-local input's value, in UTC (2026-06-20T14:05:00):
// the input has no time zone, and the server reads a time without one as UTC.
function utcLocal(text) {
  const t = text ? new Date(text) : null;
  return t && !Number.isNaN(t.getTime()) ? t.toISOString().slice(0, 19) : "";
}

// A category the project does not restrict: the values TRAIN held to choose
// from, and "another value…" opening a box for one it did not (the server
// takes it; the model reads any unseen value as its "other" category).
function categoryField(col, seen, dflt) {
  const select = el("select", { id: col.name, name: col.name });
  if (!col.required) select.append(el("option", { value: "" }, "unknown"));
  for (const v of seen) select.append(el("option", { value: String(v) }, String(v)));
  const another = el("option", { value: "", "data-other": "" }, "another value…");
  select.append(another);
  const number = col.type === "integer" || col.type === "float";
  const other = el("input", { id: col.name + "-other", type: number ? "number" : "text",
    step: number ? (col.type === "integer" ? "1" : "any") : null, min: col.min, max: col.max,
    maxlength: col.max_length, class: "other", "aria-label": `${col.name}: another value`,
    placeholder: "another value" });
  const known = seen.map(String).includes(dflt);
  if (known) select.value = dflt;
  else if (dflt !== "") { another.selected = true; other.value = dflt; }
  else if (!col.required) select.value = "";
  other.hidden = !another.selected;
  select.addEventListener("change", () => {
    other.hidden = !another.selected;
    if (!other.hidden) other.focus();
  });
  return [select, other];
}

function valueOf(col) {  // the text of a field: a select's choice, or the other-value box
  const input = document.getElementById(col.name);
  const choice = input.selectedOptions && input.selectedOptions[0];
  if (choice && choice.dataset.other !== undefined) return document.getElementById(col.name + "-other").value.trim();
  return input.value.trim();
}

function row() {
  const body = {};
  for (const col of project.columns) {
    const raw = valueOf(col);
    if (raw === "") continue;  // optional: left out, the server imputes or ignores it
    if (col.type === "boolean") body[col.name] = raw === "true";
    else if ((col.type === "integer" || col.type === "float") && !Number.isNaN(Number(raw))) body[col.name] = Number(raw);
    else body[col.name] = raw;
  }
  return body;
}

function clearErrors() {
  for (const col of project.columns) {
    document.getElementById(col.name + "-error").textContent = "";
    document.getElementById(col.name).removeAttribute("aria-invalid");
  }
  document.getElementById("form-error").textContent = "";
}

function showErrors(answer) {
  let first = null;
  for (const e of answer.errors || []) {
    const input = document.getElementById(e.field);
    const box = document.getElementById(e.field + "-error");
    if (!input || !box) continue;
    box.textContent = e.message;
    input.setAttribute("aria-invalid", "true");
    first = first || input;
  }
  if (first) first.focus();
  else document.getElementById("form-error").textContent =
    (answer.errors && answer.errors.length ? answer.errors.map(e => e.message).join("; ") : answer.detail) || "request failed";
}

function fmt(v) { return v === null || v === undefined ? "—" : String(v); }
function number(v) {  // 4 significant digits, grouped from 1,000 on (212,345)
  return Math.abs(v) >= 1000 ? v.toLocaleString(undefined, { maximumFractionDigits: 0 }) : Number(v.toPrecision(4)).toString();
}

function bars(ul, items) {  // items: [{label, value (0..1 or signed), text, aria}]
  ul.replaceChildren();
  for (const it of items) {
    const li = el("li");
    const pct = Math.min(50, Math.abs(it.value) * 100);
    li.innerHTML = `<span></span><span class="bar" aria-hidden="true"><span class="${it.value >= 0 ? "up" : "down"}" style="width:${pct}%"></span></span><span></span>`;
    li.children[0].textContent = it.label;
    if (it.title) li.children[0].title = it.title;
    li.children[2].textContent = it.text;
    li.setAttribute("aria-label", it.aria);
    ul.append(li);
  }
}

// Shapley attributions as bars, one per input column, largest first: each
// says how far the input moved the raw output (log-odds, the predicted
// class's score, the value) away from the base value, and they add up:
// base value + bars = raw output, which the summary line writes out. An input
// with no attribution at all is named in one line instead of a bar of 0.
function showAttributions(why) {
  const regression = project.task === "regression";
  const shown = (v) => regression ? number(v) : v.toFixed(2);
  const signed = (v) => `${v >= 0 ? "+" : "−"}${shown(Math.abs(v))}`;
  const moved = why.attributions.filter(a => a.attribution !== 0), still = why.attributions.filter(a => a.attribution === 0);
  const largest = Math.abs(moved.length ? moved[0].attribution : 1) || 1;
  const space = { "log-odds": "log-odds", "logit": `score (logit) of ${why.class}`, "value": `predicted ${project.target}` }[why.output_space] || why.output_space;
  bars(document.getElementById("effects"), moved.map(a => ({
    label: `${a.label}: ${fmt(a.value)}`,
    value: Math.sign(a.attribution) * Math.abs(a.attribution) / largest / 2,
    text: signed(a.attribution),
    aria: `${a.label} ${fmt(a.value)} moves the ${space} ${a.attribution >= 0 ? "up" : "down"} by ${shown(Math.abs(a.attribution))}`,
  })));
  const total = moved.reduce((sum, a) => sum + a.attribution, 0);
  const summary = document.getElementById("effects-summary");
  const calibrated = why.calibration ? ` The answer's probability then goes through the version's ${why.calibration} calibration.` : "";
  const link = why.output_space === "log-odds" ? ` (probability ${(100 / (1 + Math.exp(-why.raw_output))).toFixed(1)}% before calibration)`
    : why.output_space === "logit" ? " (the softmax of every class's score gives the probabilities)" : "";
  summary.textContent = `base value ${shown(why.base_value)} ${signed(total)} from the inputs = ${shown(why.raw_output)}, ` +
    `this row's ${space}${link}.${calibrated}` +
    (still.length ? ` No effect: ${still.map(a => `${a.label} = ${fmt(a.value)}`).join(", ")}.` : "");
  summary.dataset.space = why.output_space;
}

function verdict(answer) {
  const words = (project.verdicts || {})[String(answer.prediction)];
  const value = project.task === "regression" ? number(answer.prediction) : answer.prediction;
  return words || `${project.target}: ${value}`;
}

// An answer on screen that no longer matches the form (a field changed, or
// the new inputs were refused) is dimmed and said to be out of date.
let edits = 0;  // changes to the form: an answer to an older one is stale on arrival

function stale(yes) {
  const result = document.getElementById("result");
  if (result.hidden) return;
  result.classList.toggle("stale", yes);
  document.getElementById("stale-note").hidden = !yes;
}

function showAnswer(answer) {
  document.getElementById("result").hidden = false;
  stale(false);
  const gauge = document.getElementById("gauge"), classes = document.getElementById("classes");
  const p = project.task === "regression" ? null : answer.probability;
  gauge.hidden = project.task !== "binary";
  classes.hidden = project.task !== "multiclass";
  if (project.task === "regression") {
    document.getElementById("probability").textContent = number(answer.prediction);
    document.getElementById("probability-label").textContent = `predicted ${project.target}`;
  } else {
    const pct = (p * 100).toFixed(1);
    document.getElementById("probability").textContent = pct + "%";
    document.getElementById("gauge-bar").style.width = pct + "%";
    gauge.setAttribute("aria-valuenow", pct);
    gauge.setAttribute("aria-label", `probability of ${project.target} = ${project.task === "binary" ? project.positive_class : answer.prediction}`);
    document.getElementById("probability-label").textContent = project.probability_label ||
      (project.task === "binary" ? `chance of ${project.target} = ${project.positive_class}` : `chance of ${answer.prediction}`);
  }
  if (project.task === "multiclass") {
    const items = Object.entries(answer.probabilities).sort((a, b) => b[1] - a[1]);
    bars(classes, items.map(([c, q]) => ({ label: c, value: q / 2, text: (q * 100).toFixed(1) + "%",
      aria: `${c}: ${(q * 100).toFixed(1)} percent` })));
  }
  document.getElementById("verdict").textContent = verdict(answer);
  const version = document.getElementById("model-version");
  version.textContent = answer.model_version;
  version.href = `/models/${encodeURIComponent(answer.model_version)}`;
  document.getElementById("uuid").textContent = answer.uuid;
  // a category the model never learnt, a number or date far outside what it
  // learnt from: answered, and said (as POST /predict's warnings say)
  const warnings = document.getElementById("answer-warnings");
  warnings.replaceChildren(...(answer.warnings || []).map(w => el("li", { class: "warning" }, `⚠ ${w.message}`)));
  warnings.hidden = !warnings.children.length;
}

async function submit(event) {
  event.preventDefault();
  clearErrors();
  const asked = edits;
  const body = JSON.stringify(row());
  const headers = { "Content-Type": "application/json" };
  let resp;
  try {
    resp = await call("/predict", { method: "POST", headers, body });
  } catch (err) {
    document.getElementById("form-error").textContent = "the server cannot be reached";
    return;
  }
  const answer = await resp.json();
  if (!resp.ok) { showErrors(answer); return; }
  showAnswer(answer);
  if (edits !== asked) stale(true);  // the form changed while it was asked
  const why = await call("/explain", { method: "POST", headers, body });
  if (why.ok) { showAttributions(await why.json()); return; }
  // no stale bars from the previous row: say why there are none
  document.getElementById("effects").replaceChildren();
  let detail = `the explanation failed (${why.status})`;
  try { detail = (await why.json()).detail || detail; } catch (err) { /* not JSON */ }
  document.getElementById("effects-summary").textContent = detail;
}

async function start() {
  const resp = await call("/project");
  project = await resp.json();
  project.columns = project.columns.filter(c => c.name !== project.key);  // optional in a request
  document.title = `minimlops — ${project.name}: predict ${project.target}`;
  document.getElementById("row-title").textContent = project.row_name || "Input";
  document.getElementById("project-description").textContent =
    `${project.description || project.name} · predicts ${project.target} (${project.task})`;
  document.getElementById("effects-note").textContent = {
    binary: "Shapley attributions in log-odds, before calibration: from the base value (the model's average) each input moves this row's log-odds up or down, and the bars add up to it.",
    multiclass: "Shapley attributions to the predicted class's score (a logit), before calibration: from the base value each input moves the score up or down, and the bars add up to it.",
    regression: `Shapley attributions in ${project.target}: from the base value (the model's average) each input moves the prediction up or down, and the bars add up to it.`,
  }[project.task];
  const fields = document.getElementById("fields");
  for (const col of project.columns) fields.append(field(col));
  document.getElementById("row").addEventListener("submit", submit);
  document.getElementById("row").addEventListener("input", () => { edits += 1; stale(true); });
  document.getElementById("submit").disabled = false;
}

document.getElementById("submit").disabled = true;
start();
