// The prediction page: POST /predict (logged, like any client), then /explain.
"use strict";
const FIELDS = ["Pclass", "Sex", "Age", "SibSp", "Parch", "Fare", "Embarked", "Name", "Ticket", "Cabin"];
const NUMBERS = new Set(["Pclass", "Age", "SibSp", "Parch", "Fare"]);

function passenger() {
  const body = {};
  for (const f of FIELDS) {
    const raw = document.getElementById(f).value.trim();
    if (raw === "") continue;  // optional: left out, the server imputes or ignores it
    body[f] = NUMBERS.has(f) && !Number.isNaN(Number(raw)) ? Number(raw) : raw;
  }
  return body;
}

function clearErrors() {
  for (const f of FIELDS) {
    document.getElementById(f + "-error").textContent = "";
    document.getElementById(f).removeAttribute("aria-invalid");
  }
  document.getElementById("form-error").textContent = "";
}

function showErrors(answer) {
  let first = null;
  for (const e of answer.errors || []) {
    const input = document.getElementById(e.field);
    if (!input) continue;
    document.getElementById(e.field + "-error").textContent = e.message;
    input.setAttribute("aria-invalid", "true");
    first = first || input;
  }
  if (first) first.focus();
  else document.getElementById("form-error").textContent = answer.detail || "request failed";
}

function fmt(v) { return v === null || v === undefined ? "—" : String(v); }

function showEffects(list) {
  const ul = document.getElementById("effects");
  ul.replaceChildren();
  for (const e of list) {
    const li = document.createElement("li");
    const pct = Math.min(50, Math.abs(e.effect) * 100);
    const dir = e.effect >= 0 ? "up" : "down";
    li.innerHTML = `<span></span><span class="bar" aria-hidden="true"><span class="${dir}" style="width:${pct}%"></span></span><span></span>`;
    li.children[0].textContent = `${e.label}: ${fmt(e.value)}`;
    li.children[0].title = `typical: ${fmt(e.reference)}`;
    li.children[2].textContent = `${e.effect >= 0 ? "+" : "−"}${Math.abs(e.effect * 100).toFixed(1)} pts`;
    li.setAttribute("aria-label", `${e.label} ${fmt(e.value)} moves the probability ${dir} by ${Math.abs(e.effect * 100).toFixed(1)} points`);
    ul.append(li);
  }
}

async function submit(event) {
  event.preventDefault();
  clearErrors();
  const body = JSON.stringify(passenger());
  const headers = { "Content-Type": "application/json" };
  let resp;
  try {
    resp = await fetch("/predict", { method: "POST", headers, body });
  } catch (err) {
    document.getElementById("form-error").textContent = "the server cannot be reached";
    return;
  }
  const answer = await resp.json();
  if (!resp.ok) { showErrors(answer); return; }
  const pct = (answer.probability * 100).toFixed(1);
  document.getElementById("result").hidden = false;
  document.getElementById("probability").textContent = pct + "%";
  document.getElementById("gauge-bar").style.width = pct + "%";
  document.getElementById("gauge").setAttribute("aria-valuenow", pct);
  document.getElementById("verdict").textContent = answer.prediction === 1 ? "Survives" : "Does not survive";
  document.getElementById("model-version").textContent = answer.model_version;
  document.getElementById("uuid").textContent = answer.uuid;
  const why = await fetch("/explain", { method: "POST", headers, body });
  if (why.ok) showEffects((await why.json()).effects);
}

document.getElementById("passenger").addEventListener("submit", submit);
