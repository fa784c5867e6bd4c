// Shared by the pages, loaded before each page's own script: fetch through
// call(), which on a 401 (MINIMLOPS_PUBLIC_ROUTES set, the route not public)
// asks for the API key inline, keeps it in this tab and sends it as X-API-Key;
// readable() for numbers and fitAxis() for the charts' value axes.
"use strict";
const KEY_ITEM = "minimlops-api-key";
let asking = null;  // the open prompt: every request refused meanwhile waits for it

function askKey(message) {
  if (asking) return asking;
  asking = new Promise((resolve) => {
    const box = document.createElement("section");
    box.className = "wide"; box.id = "key-prompt";
    box.innerHTML = '<h2>API key needed</h2><form><label for="api-key">API key (sent as X-API-Key)</label>' +
      '<input id="api-key" type="password" autocomplete="off" required><button type="submit">Use this key</button>' +
      '<p role="alert"></p></form>';
    box.querySelector("p").textContent = message || "";
    box.querySelector("form").addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(KEY_ITEM, box.querySelector("input").value.trim());
      box.remove(); asking = null; resolve();
    });
    document.querySelector("main").prepend(box);
    box.querySelector("input").focus();
  });
  return asking;
}

async function call(path, init = {}) {  // fetch; on a 401, ask for the key and try again
  for (;;) {
    const key = sessionStorage.getItem(KEY_ITEM);
    const r = await fetch(path, key ? { ...init, headers: { ...init.headers, "X-API-Key": key } } : init);
    if (r.status !== 401) return r;
    const detail = (await r.json().catch(() => ({}))).detail || "this server needs an API key";
    await askKey(key ? `that key was refused: ${detail}` : detail);
  }
}

// A number as people read it, never with an exponent: grouped from 1,000 on
// (21,345: a house price, its MAE), `digits` decimals from 0.1 on (0.853),
// three significant digits under 0.1 (0.0123).
function readable(v, digits = 3) {
  if (typeof v !== "number" || !Number.isFinite(v)) return "—";
  const a = Math.abs(v);
  const opts = a >= 1000 ? { maximumFractionDigits: 0 }
    : a >= 0.1 || a === 0 ? { minimumFractionDigits: digits, maximumFractionDigits: digits }
    : { maximumSignificantDigits: 3 };
  return v.toLocaleString(undefined, opts);
}

// A uPlot value axis as wide as its longest tick label: a fixed width clips
// large values (200,000). uPlot calls it again while the sizes settle (the
// ticks change as the other axis takes its room): from the third call on it
// only grows, so that it settles.
function fitAxis(u, values, axisIdx, cycleNum) {
  const axis = u.axes[axisIdx];
  u.ctx.font = axis.font[0];  // uPlot's, scaled by the pixel ratio
  const widest = Math.max(0, ...(values || []).map((v) => u.ctx.measureText(String(v)).width)) / devicePixelRatio;
  const size = Math.ceil(axis.ticks.size + axis.gap + 4 + widest);
  return cycleNum > 1 ? Math.max(size, axis._size || 0) : size;
}

// Labelled predictions made after their row had landed in the training data:
// the model may have learnt their answers, so no live figure counts them.
function leftOut(n, counted) {
  return counted
    ? `${n.toLocaleString()} more made after their row had landed, left out`
    : `${n.toLocaleString()} labelled, all made after their row had landed, left out`;
}
