// Shared by the pages, loaded before each page's own script: fetch through
// call(), which on a 401 (MINIMLOPS_PUBLIC_ROUTES set, the route not public)
// asks for the API key inline, keeps it in this tab and sends it as X-API-Key.
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
