// LwM2M server web UI: vanilla JS, no build step. Talks to the admin API
// (/api/clients, /api/objectspecs) and listens to /api/events (SSE).
"use strict";

// `pending`: ids of requests answered 202 (queued) or 504 (timed out), whose
// result comes later as a REQUEST_RESULT event. `picked`: the resource paths
// ticked for composite operations on the selected client; `values`: the last
// value shown per path; `compositeObserved`: endpoint -> the observed path
// list ("/1/0/1,/3/0/9", sorted as the API keeps it).
const state = {
  clients: new Map(), specs: new Map(), selected: null, observed: new Set(), pending: new Set(),
  picked: new Set(), values: new Map(), compositeObserved: new Map(),
};

const $ = (sel) => document.querySelector(sel);
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}
const enc = encodeURIComponent;

function status(text, err) {
  const s = $("#status");
  if (!s) return;
  s.textContent = text;
  s.className = err ? "err" : "";
}

async function api(method, url, body) {
  const opts = { method, headers: {} };
  if (body !== undefined) {
    opts.body = typeof body === "string" ? body : JSON.stringify(body);
    opts.headers["Content-Type"] = typeof body === "string" ? "text/plain" : "application/json";
  }
  const r = await fetch(url, opts);
  const j = await r.json().catch(() => ({}));
  return { http: r.status, body: j };
}

// --- values ---------------------------------------------------------------

function show(path, value) {
  state.values.set(path, value);
  const cell = document.getElementById("v-" + path);
  if (cell) cell.textContent = typeof value === "object" ? JSON.stringify(value) : String(value);
}

// Writes a node's values into the value cells under `path`.
function showNode(path, node) {
  if (!node) return;
  const parts = path.split("/").filter(Boolean);
  switch (node.kind) {
    case "obj":
      for (const i of node.instances) showNode(`/${parts[0]}/${i.id}`, i);
      break;
    case "instance":
      for (const r of node.resources) showNode(`/${parts[0]}/${parts[1]}/${r.id}`, r);
      break;
    case "singleResource":
      show(path, node.value);
      break;
    case "multiResource":
      show(path, node.values);
      break;
    case "resourceInstance":
      show(path.split("/").slice(0, 4).join("/"), node.value);
      break;
  }
}

// Timestamped values (Send, Observe-Composite): resource values only, as
// the table has one cell per resource.
function showValues(values) {
  for (const v of values) {
    if (v.path.split("/").filter(Boolean).length === 3) show(v.path, v.value);
  }
}

function report(op, path, res) {
  const b = res.body;
  if ((res.http === 202 || res.http === 504) && b.requestId) state.pending.add(b.requestId);
  if (res.http === 202) status(`${op} ${path}: queued (${b.requestId}), client is sleeping`);
  else if (b.error) status(`${op} ${path}: ${b.error}`, true);
  else status(`${op} ${path}: ${b.status} ${b.code}${b.errorMessage ? " " + b.errorMessage : ""}`, !b.success);
  if (b.success && b.content) showNode(path, b.content);
  if (b.success && b.values) showComposite(b.values);
}

// --- operations -------------------------------------------------------------

function url(ep, path, suffix = "") {
  return `/api/clients/${enc(ep)}${path}${suffix}`;
}

async function read(ep, path) {
  status(`read ${path}…`);
  report("read", path, await api("GET", url(ep, path)));
}

async function write(ep, path, type) {
  const text = prompt(`New value for ${path} (${type})`);
  if (text === null) return;
  let value = text;
  if (["INTEGER", "UNSIGNED_INTEGER", "FLOAT", "TIME"].includes(type)) value = Number(text);
  if (type === "BOOLEAN") value = text === "true" || text === "1";
  const res = await api("PUT", url(ep, path), { id: Number(path.split("/")[3]), kind: "singleResource", type, value });
  report("write", path, res);
  if (res.body.success) read(ep, path);
}

async function exec(ep, path) {
  const args = prompt(`Arguments for ${path} (e.g. 0='a',1), empty for none`, "");
  if (args === null) return;
  report("execute", path, await api("POST", url(ep, path), args));
}

async function observe(ep, path, button) {
  const key = ep + path;
  if (state.observed.has(key)) {
    const res = await api("DELETE", url(ep, path, "/observe"));
    state.observed.delete(key);
    button.classList.remove("on");
    report("cancel observe", path, res);
  } else {
    const res = await api("POST", url(ep, path, "/observe"));
    if (res.body.success) {
      state.observed.add(key);
      button.classList.add("on");
    }
    report("observe", path, res);
  }
}

// --- composite operations ---------------------------------------------------
// Read-, Observe- and Write-Composite of the resources ticked in the object
// tree (GET / POST / DELETE / PUT /api/clients/{ep}/composite).

// The ticked paths, sorted as the API sorts them (numerically by id).
function pickedPaths() {
  const ids = (p) => p.split("/").filter(Boolean).map(Number);
  return [...state.picked].sort((a, b) => {
    const [x, y] = [ids(a), ids(b)];
    for (let i = 0; i < Math.max(x.length, y.length); i++) {
      if (x[i] !== y[i]) return (x[i] ?? -1) - (y[i] ?? -1);
    }
    return 0;
  });
}

function compositeUrl(ep, paths) {
  return url(ep, "/composite", paths ? `?paths=${enc(paths.join(","))}` : "");
}

// Values of a composite answer or notification: in the tree and as a list.
function showComposite(values) {
  showValues(values);
  const out = $("#composite-result");
  if (!out) return;
  out.replaceChildren(...values.map((v) => el("li", { "data-path": v.path },
    el("code", {}, v.path), " = ", typeof v.value === "object" ? JSON.stringify(v.value) : String(v.value))));
}

function needPicked(op) {
  const paths = pickedPaths();
  if (paths.length === 0) status(`${op}: tick resources in the tree first`, true);
  return paths;
}

async function readComposite(ep) {
  const paths = needPicked("read-composite");
  if (paths.length === 0) return;
  status(`read-composite ${paths.join(",")}…`);
  report("read-composite", paths.join(","), await api("GET", compositeUrl(ep, paths)));
}

async function observeComposite(ep) {
  const current = state.compositeObserved.get(ep);
  // The panel is redrawn (button state) before the answer's values go in.
  if (current) {
    const res = await api("DELETE", compositeUrl(ep, current.split(",")));
    state.compositeObserved.delete(ep);
    renderCompositePanel(ep);
    report("cancel observe-composite", current, res);
  } else {
    const paths = needPicked("observe-composite");
    if (paths.length === 0) return;
    const res = await api("POST", compositeUrl(ep, paths));
    if (res.body.success) state.compositeObserved.set(ep, paths.join(","));
    renderCompositePanel(ep);
    report("observe-composite", paths.join(","), res);
  }
}

// Write-Composite: the ticked writable resources as a JSON object of
// path -> value, prefilled with the values last shown, edited in a prompt.
async function writeComposite(ep) {
  const paths = needPicked("write-composite").filter((p) => {
    const box = document.querySelector(`input.pick[data-path="${p}"]`);
    return !box || box.dataset.writable === "true";
  });
  if (paths.length === 0) return status("write-composite: none of the ticked resources is writable", true);
  const draft = {};
  for (const p of paths) draft[p] = state.values.has(p) ? state.values.get(p) : null;
  const text = prompt("Write-Composite: values by path (JSON)", JSON.stringify(draft));
  if (text === null) return;
  let body;
  try { body = JSON.parse(text); } catch (e) { return status(`write-composite: JSON: ${e.message}`, true); }
  const written = Object.keys(body);
  const res = await api("PUT", compositeUrl(ep), body);
  report("write-composite", written.join(","), res);
  if (res.body.success) {
    status(`write-composite ${written.join(",")}: ${res.body.status} ${res.body.code}, reading back…`);
    report("read-composite", written.join(","), await api("GET", compositeUrl(ep, written)));
  }
}

function renderCompositePanel(ep) {
  const panel = $("#composite");
  if (!panel) return;
  const paths = pickedPaths();
  const observed = state.compositeObserved.get(ep);
  const ob = el("button", { "data-op": "observe-composite", onclick: () => observeComposite(ep) },
    observed ? "Cancel Observe-Composite" : "Observe-Composite");
  if (observed) ob.classList.add("on");
  panel.replaceChildren(
    el("h3", {}, "Composite"),
    el("p", { id: "composite-paths" }, paths.length ? paths.join(", ") : "Tick resources in the tree below."),
    el("p", {},
      el("button", { "data-op": "read-composite", onclick: () => readComposite(ep) }, "Read-Composite"), ob,
      el("button", { "data-op": "write-composite", onclick: () => writeComposite(ep) }, "Write-Composite"),
      el("button", { "data-op": "clear-picked", onclick: () => { state.picked.clear(); renderDetail(); } }, "Clear")),
    observed ? el("p", { class: "meta" }, `observing ${observed}`) : "",
    el("ul", { id: "composite-result" }));
}

function pickBox(ep, path, def) {
  const box = el("input", { type: "checkbox", class: "pick", "data-path": path, title: "select for composite operations",
    "data-writable": String(Boolean(def && def.operations.includes("W"))) });
  box.checked = state.picked.has(path);
  box.addEventListener("change", () => {
    if (box.checked) state.picked.add(path);
    else state.picked.delete(path);
    renderCompositePanel(ep);
  });
  return el("td", { class: "pick" }, box);
}

// --- rendering --------------------------------------------------------------

function renderClients() {
  const ul = $("#clients");
  ul.replaceChildren();
  if (state.clients.size === 0) ul.append(el("li", { class: "empty" }, "No client registered."));
  for (const c of [...state.clients.values()].sort((a, b) => a.endpoint.localeCompare(b.endpoint))) {
    const li = el("li", { "data-ep": c.endpoint, class: c.endpoint === state.selected ? "sel" : "", onclick: () => select(c.endpoint) },
      el("div", { class: "ep" }, el("span", { class: "dot" + (c.sleeping ? " sleeping" : "") }), c.endpoint),
      el("div", { class: "meta" }, `${c.address} · LwM2M ${c.lwM2mVersion} · ${c.bindingMode}${c.queueMode ? " · queue" : ""}`));
    ul.append(li);
  }
}

function opsFor(ep, path, def) {
  const td = el("td", { class: "ops" });
  const ops = def ? def.operations : "RW";
  if (ops.includes("R")) {
    td.append(el("button", { onclick: () => read(ep, path), "data-op": "read" }, "Read"));
    const ob = el("button", { "data-op": "observe" }, "Observe");
    ob.addEventListener("click", () => observe(ep, path, ob));
    if (state.observed.has(ep + path)) ob.classList.add("on");
    td.append(ob);
  }
  if (ops.includes("W") && !(def && def.instancetype === "multiple")) {
    td.append(el("button", { onclick: () => write(ep, path, def ? def.type.toUpperCase() : "STRING"), "data-op": "write" }, "Write"));
  }
  if (ops.includes("E")) td.append(el("button", { onclick: () => exec(ep, path), "data-op": "execute" }, "Execute"));
  return td;
}

function renderInstance(ep, oid, iid, spec) {
  const base = `/${oid}/${iid}`;
  const head = el("h4", {}, `Instance ${iid}`,
    el("button", { onclick: () => read(ep, base), "data-op": "read", "data-path": base }, "Read"),
    el("button", { onclick: () => discover(ep, base), "data-op": "discover" }, "Discover"));
  const table = el("table");
  const defs = spec ? spec.resourcedefs : [];
  for (const d of defs) {
    const path = `${base}/${d.id}`;
    table.append(el("tr", { "data-path": path },
      pickBox(ep, path, d),
      el("td", { class: "id" }, String(d.id)),
      el("td", { class: "name" }, d.name + (d.units ? ` (${d.units})` : "")),
      el("td", { class: "val", id: "v-" + path }),
      opsFor(ep, path, d)));
  }
  if (!spec) table.append(el("tr", {}, el("td", { colspan: 5, class: "empty" }, "Unknown object: Read the instance to see its resources.")));
  return el("div", { class: "inst" }, head, table);
}

async function discover(ep, path) {
  const res = await api("GET", url(ep, path, "/discover"));
  report("discover", path, res);
  if (res.body.objectLinks) status(`discover ${path}: ` + res.body.objectLinks.map((l) => l.url + Object.entries(l.attributes).map(([k, v]) => `;${k}=${v}`).join("")).join(", "));
}

function renderDetail() {
  const d = $("#detail");
  const c = state.clients.get(state.selected);
  if (!c) {
    d.replaceChildren(el("p", { class: "empty" }, state.selected ? `${state.selected} is no longer registered.` : "Select a client."));
    return;
  }
  const info = el("dl");
  for (const [k, v] of [["Endpoint", c.endpoint], ["Registration", c.registrationId], ["Address", c.address], ["Lifetime", c.lifetime + " s"],
    ["LwM2M", c.lwM2mVersion], ["Binding", c.bindingMode + (c.queueMode ? " (queue mode" + (c.sleeping ? ", sleeping)" : ", awake)") : "")],
    ["Registered", c.registrationDate], ["Last update", c.lastUpdate]]) info.append(el("dt", {}, k), el("dd", {}, String(v)));
  // Objects and their instances from the registration's object links.
  const objects = new Map();
  for (const l of c.objectLinks) {
    const [o, i] = l.url.split("/").filter(Boolean).map(Number);
    if (!objects.has(o)) objects.set(o, new Set());
    if (i !== undefined) objects.get(o).add(i);
  }
  const tree = el("div");
  for (const [o, insts] of [...objects.entries()].sort((a, b) => a[0] - b[0])) {
    const spec = state.specs.get(o);
    // Security (/0) holds keys and is not readable over DM: start it closed.
    const box = el("details", { class: "obj", "data-object": String(o) }, el("summary", {}, el("h3", {}, `${spec ? spec.name : "Object"} (/${o})`)));
    if (o !== 0) box.open = true;
    for (const i of [...insts].sort((a, b) => a - b)) box.append(renderInstance(c.endpoint, o, i, spec));
    tree.append(box);
  }
  const panel = el("section", { id: "composite" });
  d.replaceChildren(el("div", { id: "status" }), el("h2", {}, c.endpoint), info, panel, tree);
  renderCompositePanel(c.endpoint);
  // Values read before a re-render (e.g. an Update) stay visible.
  for (const [p, v] of state.values) show(p, v);
}

async function select(ep) {
  if (ep !== state.selected) {
    state.picked.clear();
    state.values.clear();
  }
  state.selected = ep;
  renderClients();
  renderDetail();
}

async function loadClients() {
  const res = await api("GET", "/api/clients");
  state.clients = new Map(res.body.map((c) => [c.endpoint, c]));
  renderClients();
}

// --- live events -------------------------------------------------------------

function listen() {
  const es = new EventSource("/api/events");
  es.onopen = () => { $("#live").textContent = "live"; };
  es.onerror = () => { $("#live").textContent = "reconnecting…"; };
  const upsert = (e) => {
    const c = JSON.parse(e.data);
    const selectedChanged = c.endpoint === state.selected;
    state.clients.set(c.endpoint, c);
    renderClients();
    if (selectedChanged && e.type === "REGISTRATION") renderDetail();
  };
  es.addEventListener("REGISTRATION", upsert);
  es.addEventListener("UPDATED", upsert);
  es.addEventListener("DEREGISTRATION", (e) => {
    const c = JSON.parse(e.data);
    state.clients.delete(c.endpoint);
    for (const k of [...state.observed]) if (k.startsWith(c.endpoint + "/")) state.observed.delete(k);
    state.compositeObserved.delete(c.endpoint);
    renderClients();
    if (c.endpoint === state.selected) renderDetail();
  });
  for (const name of ["AWAKE", "SLEEPING"]) {
    es.addEventListener(name, (e) => {
      const c = state.clients.get(JSON.parse(e.data).ep);
      if (!c) return;
      c.sleeping = name === "SLEEPING";
      renderClients();
    });
  }
  es.addEventListener("NOTIFICATION", (e) => {
    const n = JSON.parse(e.data);
    if (n.ep !== state.selected || !n.res || !n.val) return;
    if (Array.isArray(n.val)) showComposite(n.val);
    else showNode(n.res, n.val);
  });
  es.addEventListener("SEND", (e) => {
    const d = JSON.parse(e.data);
    if (d.ep !== state.selected) return;
    showValues(d.values);
    status(`SEND from ${d.ep}: ${d.values.length} value(s)`);
  });
  es.addEventListener("REQUEST_RESULT", (e) => {
    const r = JSON.parse(e.data);
    if (!state.pending.delete(r.requestId)) return; // answered directly already
    if (r.ep === state.selected) report(`${r.operation} (${r.requestId}, later)`, r.path, { http: 200, body: r.result });
  });
}

(async function main() {
  const specs = await api("GET", "/api/objectspecs");
  for (const s of specs.body) state.specs.set(s.id, s);
  listen();
  await loadClients();
  // AWAKE/SLEEPING events cover clients registered while the server ran;
  // an occasional refresh covers the rest (e.g. restored registrations).
  setInterval(loadClients, 60000);
})();

// --- bootstrap configuration editor --------------------------------------------
// Lists the bootstrap server's configurations (/api/bootstrap) and edits one
// as the JSON of a bootstrap.json entry: Save is a PUT (the server validates
// and answers the stored configuration, defaults filled in), Delete a DELETE.

const BS_TEMPLATE = {
  security: [{ id: 1, uri: "coap://127.0.0.1:5683", short_server_id: 101 }],
  servers: [{ id: 0, short_server_id: 101, lifetime: 300 }],
};

async function bootstrapEditor(selectEp) {
  state.selected = null;
  renderClients();
  const d = $("#detail");
  const list = el("ul", { id: "bs-list" });
  const epInput = el("input", { id: "bs-ep", placeholder: "endpoint name" });
  const text = el("textarea", { id: "bs-json", spellcheck: "false" });
  const edit = (ep, config) => {
    epInput.value = ep;
    text.value = JSON.stringify(config, null, 2);
  };
  const save = el("button", { id: "bs-save", onclick: async () => {
    const ep = epInput.value.trim();
    if (!ep) return status("bootstrap: give an endpoint name", true);
    let body;
    try { body = JSON.parse(text.value); } catch (e) { return status(`bootstrap ${ep}: JSON: ${e.message}`, true); }
    const res = await api("PUT", `/api/bootstrap/${enc(ep)}`, body);
    if (res.http !== 200) return status(`bootstrap ${ep}: ${res.body.error || res.http}`, true);
    await bootstrapEditor(ep);
    status(`bootstrap ${ep}: saved`);
  } }, "Save");
  const del = el("button", { id: "bs-delete", onclick: async () => {
    const ep = epInput.value.trim();
    if (!ep || !confirm(`Delete the bootstrap configuration of ${ep}?`)) return;
    const res = await api("DELETE", `/api/bootstrap/${enc(ep)}`);
    if (res.http !== 204) return status(`bootstrap ${ep}: ${res.body.error || res.http}`, true);
    await bootstrapEditor();
    status(`bootstrap ${ep}: deleted`);
  } }, "Delete");
  const fresh = el("button", { id: "bs-new", onclick: () => edit("", BS_TEMPLATE) }, "New");
  d.replaceChildren(el("div", { id: "status" }), el("h2", {}, "Bootstrap configurations"), list,
    el("p", {}, epInput, " ", save, del, fresh), text);
  const res = await api("GET", "/api/bootstrap");
  if (res.http !== 200) {
    status(`bootstrap: ${res.body.error || res.http}`, true);
    return;
  }
  const endpoints = res.body.endpoints || {};
  const names = Object.keys(endpoints).sort();
  if (names.length === 0) list.append(el("li", { class: "empty" }, "No configuration."));
  for (const ep of names) {
    list.append(el("li", {}, el("button", { "data-bs-ep": ep, onclick: () => edit(ep, endpoints[ep]) }, ep)));
  }
  if (selectEp && endpoints[selectEp]) edit(selectEp, endpoints[selectEp]);
  else edit("", BS_TEMPLATE);
}

$("#bootstrap-link").addEventListener("click", (e) => {
  e.preventDefault();
  bootstrapEditor();
});
