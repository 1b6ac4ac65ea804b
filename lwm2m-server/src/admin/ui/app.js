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
  renderTargets();
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
  d.replaceChildren(el("div", { id: "status" }), el("h2", {}, c.endpoint), info,
    el("section", { class: "box", id: "fw-update" }), panel, tree);
  renderFirmwarePanel(c.endpoint);
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
  listenFirmware(es);
}

(async function main() {
  const specs = await api("GET", "/api/objectspecs");
  for (const s of specs.body) state.specs.set(s.id, s);
  listen();
  await Promise.all([loadClients(), loadPackages(), loadJobs()]);
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

// --- firmware: packages, one-device updates, campaigns ------------------------
// Packages (/api/firmware: upload as a raw body, list, delete), a client's
// update (POST /api/clients/{ep}/firmware, its job's phases live from
// FIRMWARE events) and campaigns (/api/campaigns, per-device status live from
// CAMPAIGN events). `jobs`: job id -> the job as last seen; `reached`: job id
// -> its last phase before it failed; `campaigns`: id -> summary; `shown`: the
// campaign whose detail is open (with its devices); `loading`: the campaign
// whose detail is being fetched, `stale`: an event for it came meanwhile;
// `choice`: the package and delivery last picked, kept across re-renders of
// a client's page.

const fw = {
  packages: [], jobs: new Map(), reached: new Map(), campaigns: new Map(), shown: null, loading: null, stale: false,
  choice: { package: "", delivery: "coap" },
};
const PHASES = ["pending", "delivering", "downloaded", "updating", "succeeded"];
const DELIVERIES = ["push", "coap", "http"];

const shortSha = (sha) => sha.slice(0, 12) + "…";
const when = (ms) => new Date(ms).toISOString().replace("T", " ").slice(0, 19) + "Z";
const sizeOf = (n) => (n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`);
const phaseRank = (p) => (p === "failed" ? PHASES.length : PHASES.indexOf(p));
const packageLabel = (id) => {
  const p = fw.packages.find((x) => x.id === id);
  return p ? `${p.name} ${p.version}` : id;
};

async function loadPackages() {
  const res = await api("GET", "/api/firmware");
  fw.packages = res.http === 200 ? res.body : [];
  return res;
}

function choose(id, options, selected, onchange) {
  const s = el("select", { id, onchange: () => onchange && onchange(s.value) });
  for (const [value, label] of options) {
    const o = el("option", { value }, label);
    if (value === selected) o.selected = true;
    s.append(o);
  }
  return s;
}

function packageChoice(id, selected, onchange) {
  const options = fw.packages.map((p) => [p.id, `${p.name} ${p.version} (${shortSha(p.sha256)})`]);
  if (options.length === 0) options.push(["", "no package uploaded"]);
  return choose(id, options, selected, onchange);
}

function deliveryChoice(id, selected, onchange) {
  return choose(id, DELIVERIES.map((d) => [d, d === "push" ? "push (Write /5/0/0)" : `${d} pull (/5/0/1)`]), selected, onchange);
}

// A job as published: phases only move forward, so an older copy (the POST
// answer arriving after the first events) never replaces a newer one.
function upsertJob(job) {
  const old = fw.jobs.get(job.id);
  if (old && phaseRank(old.status) > phaseRank(job.status)) return false;
  if (job.status === "failed" && old && old.status !== "failed") fw.reached.set(job.id, old.status);
  fw.jobs.set(job.id, job);
  return true;
}

function latestJob(ep) {
  let last = null;
  for (const j of fw.jobs.values()) {
    if (j.endpoint === ep && (!last || Number(j.id.slice(1)) > Number(last.id.slice(1)))) last = j;
  }
  return last;
}

function renderJob(ep) {
  const box = $("#fw-job");
  if (!box) return;
  const job = latestJob(ep);
  if (!job) {
    box.removeAttribute("data-status");
    return box.replaceChildren(el("p", { class: "meta" }, "No update started since the server started."));
  }
  box.dataset.job = job.id;
  box.dataset.status = job.status;
  const failed = job.status === "failed";
  const at = phaseRank(failed ? fw.reached.get(job.id) || "pending" : job.status);
  const steps = el("ol", { class: "phases" });
  PHASES.forEach((p, i) => {
    const cls = i < at || (i === at && p === "succeeded") ? "done" : i === at ? (failed ? "fail" : "now") : "";
    steps.append(el("li", { class: cls, "data-phase": p }, p));
  });
  const outcome = failed ? `failed: ${job.reason || "no reason given"}`
    : job.status === "succeeded" ? "succeeded" : `${job.status}…`;
  box.replaceChildren(
    el("p", { class: "meta" }, `Job ${job.id}: ${packageLabel(job.package)} by ${job.delivery}, started ${when(job.created)}`),
    steps,
    el("p", { id: "fw-outcome", class: failed ? "bad" : job.status === "succeeded" ? "good" : "" }, outcome));
}

function renderFirmwarePanel(ep) {
  const panel = $("#fw-update");
  if (!panel) return;
  if (!fw.packages.some((p) => p.id === fw.choice.package)) fw.choice.package = fw.packages.length ? fw.packages[0].id : "";
  const pkg = packageChoice("fw-package", fw.choice.package, (v) => { fw.choice.package = v; });
  const delivery = deliveryChoice("fw-delivery", fw.choice.delivery, (v) => { fw.choice.delivery = v; });
  const go = el("button", { id: "fw-start", onclick: () => startUpdate(ep) }, "Update firmware");
  if (!fw.choice.package) go.disabled = true;
  panel.replaceChildren(el("h3", {}, "Firmware"), el("p", {}, pkg, " ", delivery, " ", go), el("div", { id: "fw-job" }));
  renderJob(ep);
}

async function startUpdate(ep) {
  const { package: id, delivery } = fw.choice;
  if (!id) return status("firmware: upload a package first (firmware page)", true);
  status(`firmware ${ep}: starting ${packageLabel(id)} by ${delivery}…`);
  const res = await api("POST", url(ep, "/firmware"), { package: id, delivery });
  if (res.http !== 202) return status(`firmware ${ep}: ${res.body.error || res.http}`, true);
  upsertJob(res.body);
  status(`firmware ${ep}: job ${res.body.id} started`);
  renderJob(ep);
}

async function loadJobs() {
  const res = await api("GET", "/api/jobs");
  if (res.http === 200) for (const j of res.body) upsertJob(j);
}

// --- the firmware page: packages and campaigns --------------------------------

async function firmwarePage() {
  state.selected = null;
  renderClients();
  fw.shown = null;
  const d = $("#detail");
  const file = el("input", { id: "fw-file", type: "file" });
  const name = el("input", { id: "fw-name", placeholder: "name" });
  const version = el("input", { id: "fw-version", placeholder: "version" });
  file.addEventListener("change", () => {
    if (!name.value && file.files[0]) name.value = file.files[0].name.replace(/\.[^.]*$/, "");
  });
  const upload = el("button", { id: "fw-upload", onclick: () => uploadPackage(file, name, version) }, "Upload");
  d.replaceChildren(el("div", { id: "status" }), el("h2", {}, "Firmware"),
    el("section", { class: "box", id: "fw-packages" }, el("h3", {}, "Packages"),
      el("p", {}, file, " ", name, " ", version, " ", upload), el("table", { id: "fw-package-list" })),
    el("section", { class: "box", id: "fw-campaign-new" }),
    el("section", { class: "box", id: "fw-campaigns" }, el("h3", {}, "Campaigns"), el("table", { id: "fw-campaign-list" })),
    el("section", { class: "box", id: "fw-campaign" }));
  const res = await loadPackages();
  if (res.http !== 200) status(`firmware: ${res.body.error || res.http}`, true);
  renderPackages();
  renderNewCampaign();
  const list = await api("GET", "/api/campaigns");
  if (list.http !== 200) return status(`campaigns: ${list.body.error || list.http}`, true);
  fw.campaigns = new Map(list.body.map((c) => [c.id, c]));
  renderCampaigns();
}

async function uploadPackage(file, name, version) {
  const f = file.files[0];
  if (!f || !name.value.trim() || !version.value.trim()) return status("upload: choose a file and give its name and version", true);
  status(`upload ${f.name}…`);
  const r = await fetch(`/api/firmware?name=${enc(name.value.trim())}&version=${enc(version.value.trim())}`,
    { method: "POST", body: f, headers: { "Content-Type": "application/octet-stream" } });
  const body = await r.json().catch(() => ({}));
  if (r.status !== 201) return status(`upload ${f.name}: ${body.error || r.status}`, true);
  await loadPackages();
  renderPackages();
  refreshCampaignPackages();
  file.value = "";
  name.value = "";
  version.value = "";
  status(`upload ${f.name}: stored as ${body.id} (${sizeOf(body.size)}, SHA-256 ${shortSha(body.sha256)})`);
}

async function deletePackage(p) {
  if (!confirm(`Delete package ${p.name} ${p.version}?`)) return;
  const res = await api("DELETE", `/api/firmware/${enc(p.id)}`);
  if (res.http !== 204) return status(`delete ${p.id}: ${res.body.error || res.http}`, true);
  await loadPackages();
  renderPackages();
  refreshCampaignPackages();
  status(`package ${p.name} ${p.version} deleted`);
}

function renderPackages() {
  const t = $("#fw-package-list");
  if (!t) return;
  t.replaceChildren(el("tr", {}, ...["Name", "Version", "Size", "SHA-256", "Created", ""].map((h) => el("th", {}, h))));
  if (fw.packages.length === 0) t.append(el("tr", {}, el("td", { colspan: 6, class: "empty" }, "No package uploaded.")));
  for (const p of fw.packages) {
    t.append(el("tr", { "data-package": p.id },
      el("td", {}, p.name), el("td", {}, p.version), el("td", { class: "size" }, sizeOf(p.size)),
      el("td", { class: "sha", title: p.sha256 }, shortSha(p.sha256)), el("td", {}, when(p.created)),
      el("td", { class: "ops" }, el("button", { "data-op": "delete-package", onclick: () => deletePackage(p) }, "Delete"))));
  }
}

// "2, 50%" -> [2, "50%"]; null (and a message) when a part is neither.
function parseWaves(text) {
  const waves = [];
  for (const part of text.split(",").map((s) => s.trim()).filter(Boolean)) {
    if (/^\d+$/.test(part)) waves.push(Number(part));
    else if (/^\d+(\.\d+)?%$/.test(part)) waves.push(part);
    else return null;
  }
  return waves;
}

function renderNewCampaign() {
  const box = $("#fw-campaign-new");
  if (!box) return;
  const name = el("input", { id: "fw-c-name", placeholder: "campaign name" });
  const pkg = packageChoice("fw-c-package", fw.packages.length ? fw.packages[0].id : "");
  const delivery = deliveryChoice("fw-c-delivery", "coap");
  const waves = el("input", { id: "fw-c-waves", placeholder: "e.g. 1, 50% (rest: last wave)" });
  const max = el("input", { id: "fw-c-max", type: "number", min: "1", value: "10" });
  const threshold = el("input", { id: "fw-c-threshold", type: "number", min: "0", value: "0" });
  const paused = el("input", { id: "fw-c-paused", type: "checkbox" });
  const all = el("input", { id: "fw-c-all", type: "checkbox" });
  const targets = el("ul", { id: "fw-c-targets" });
  all.addEventListener("change", () => {
    for (const b of targets.querySelectorAll("input.target")) b.checked = all.checked;
  });
  const create = el("button", { id: "fw-c-create", onclick: async () => {
    const picked = [...targets.querySelectorAll("input.target:checked")].map((b) => b.value);
    const w = parseWaves(waves.value);
    if (!name.value.trim()) return status("campaign: give it a name", true);
    if (!pkg.value) return status("campaign: upload a package first", true);
    if (picked.length === 0) return status("campaign: pick at least one target", true);
    if (w === null) return status(`campaign: waves ${JSON.stringify(waves.value)}: expected counts or percentages separated by commas, e.g. 1, 50%`, true);
    const res = await api("POST", "/api/campaigns", {
      name: name.value.trim(), package: pkg.value, delivery: delivery.value, targets: picked, waves: w,
      max_concurrent: Number(max.value), failure_threshold: Number(threshold.value), paused: paused.checked,
    });
    if (res.http !== 201) return status(`campaign: ${res.body.error || res.http}`, true);
    status(`campaign ${res.body.name}: created as ${res.body.id} over ${picked.length} device(s)`);
    name.value = "";
    showCampaign(res.body);
  } }, "Create campaign");
  const row = (label, ...input) => el("tr", {}, el("td", { class: "name" }, label), el("td", {}, ...input));
  box.replaceChildren(el("h3", {}, "New campaign"), el("table", {},
    row("Name", name), row("Package", pkg), row("Delivery", delivery),
    row("Targets", el("label", {}, all, " select all"), targets),
    row("Waves", waves), row("Max concurrent", max), row("Failure threshold", threshold),
    row("Start paused", paused)), el("p", {}, create));
  renderTargets();
}

// The campaign form's targets: the registered clients, ticks kept as
// clients come and go.
function renderTargets() {
  const ul = $("#fw-c-targets");
  if (!ul) return;
  const ticked = new Set([...ul.querySelectorAll("input.target:checked")].map((b) => b.value));
  const endpoints = [...state.clients.keys()].sort();
  ul.replaceChildren();
  if (endpoints.length === 0) ul.append(el("li", { class: "empty" }, "No client registered."));
  for (const ep of endpoints) {
    const box = el("input", { type: "checkbox", class: "target", value: ep });
    box.checked = ticked.has(ep);
    ul.append(el("li", {}, el("label", {}, box, " ", ep)));
  }
}

// The campaign form's package choice after an upload or a delete; the rest
// of the form keeps what the operator filled in.
function refreshCampaignPackages() {
  const old = $("#fw-c-package");
  if (old) old.replaceWith(packageChoice("fw-c-package", old.value || (fw.packages[0] || {}).id));
}

function countsText(counts) {
  return [...PHASES, "failed"].filter((p) => counts[p]).map((p) => `${counts[p]} ${p}`).join(" · ") || "no device";
}

function summaryOf(c) {
  const { change, device, devices, ...summary } = c;
  return summary;
}

function renderCampaigns() {
  const t = $("#fw-campaign-list");
  if (!t) return;
  t.replaceChildren(el("tr", {}, ...["Name", "Status", "Package", "Delivery", "Devices", "Created"].map((h) => el("th", {}, h))));
  const all = [...fw.campaigns.values()].sort((a, b) => b.created - a.created);
  if (all.length === 0) t.append(el("tr", {}, el("td", { colspan: 6, class: "empty" }, "No campaign.")));
  for (const c of all) {
    t.append(el("tr", { "data-campaign": c.id, class: "pickable" + (fw.shown && fw.shown.id === c.id ? " sel" : ""), onclick: () => showCampaign(c) },
      el("td", {}, c.name), el("td", { class: "cstatus", "data-status": c.status }, c.status),
      el("td", {}, packageLabel(c.package)), el("td", {}, c.delivery),
      el("td", { class: "counts" }, countsText(c.counts)), el("td", {}, when(c.created))));
  }
}

// Opens campaign `c`'s detail from a fresh GET. Events for it that arrive
// while the GET is answered may be newer than the answer: then it asks again
// (a few times at most; later events apply to the detail directly).
async function showCampaign(c) {
  let res;
  fw.loading = c.id;
  for (let tries = 0; tries < 5; tries++) {
    fw.stale = false;
    res = await api("GET", `/api/campaigns/${enc(c.id)}`);
    if (res.http !== 200 || !fw.stale) break;
  }
  fw.loading = null;
  if (res.http !== 200) return status(`campaign ${c.id}: ${res.body.error || res.http}`, true);
  fw.shown = res.body;
  fw.campaigns.set(c.id, summaryOf(res.body));
  renderCampaigns();
  renderCampaign();
}

async function controlCampaign(action) {
  const c = fw.shown;
  if (!c) return;
  if (action === "cancel" && !confirm(`Cancel campaign ${c.name}?`)) return;
  const res = await api("POST", `/api/campaigns/${enc(c.id)}/${action}`);
  if (res.http !== 200) return status(`${action} ${c.name}: ${res.body.error || res.http}`, true);
  status(`${action} ${c.name}: ${res.body.status}`);
  // The answer may be older than events already shown: read it afresh.
  await showCampaign(c);
}

function renderCampaign() {
  const box = $("#fw-campaign");
  const c = fw.shown;
  if (!box || !c) return;
  const info = el("dl");
  for (const [k, v] of [["Id", c.id], ["Status", c.status + (c.reason ? `: ${c.reason}` : "")], ["Package", packageLabel(c.package)],
    ["Delivery", c.delivery], ["Waves", c.waves.join(", ")], ["Max concurrent", c.max_concurrent],
    ["Failure threshold", c.failure_threshold], ["In flight", c.in_flight], ["Devices", countsText(c.counts)]]) {
    info.append(el("dt", {}, k), el("dd", {}, String(v)));
  }
  const button = (action, label, enabled) => {
    const b = el("button", { "data-op": action, onclick: () => controlCampaign(action) }, label);
    b.disabled = !enabled;
    return b;
  };
  const live = c.status === "running" || c.status === "paused";
  const devices = el("table", { id: "fw-campaign-devices" },
    el("tr", {}, ...["Device", "Wave", "Status", "Reason"].map((h) => el("th", {}, h))));
  for (const dv of c.devices) {
    devices.append(el("tr", { "data-ep": dv.endpoint },
      el("td", {}, dv.endpoint), el("td", {}, String(dv.wave + 1)),
      el("td", { class: "dstatus", "data-status": dv.status }, dv.status), el("td", {}, dv.reason || "")));
  }
  box.dataset.campaign = c.id;
  box.dataset.status = c.status;
  box.replaceChildren(el("h3", {}, `Campaign ${c.name}`), info,
    el("p", {}, button("pause", "Pause", c.status === "running"), button("resume", "Resume", c.status === "paused"),
      button("cancel", "Cancel", live)),
    devices);
}

// A campaign's summary (an event or an answer, maybe with one device or
// all of them) into the list and, when it is the one open, its detail.
function applyCampaign(data) {
  if (fw.loading === data.id) fw.stale = true;
  fw.campaigns.set(data.id, summaryOf(data));
  const c = fw.shown;
  if (c && c.id === data.id) {
    Object.assign(c, summaryOf(data));
    if (data.devices) c.devices = data.devices;
    if (data.device) c.devices = c.devices.map((d) => (d.endpoint === data.device.endpoint ? data.device : d));
    renderCampaign();
  }
  renderCampaigns();
}

function listenFirmware(es) {
  es.addEventListener("FIRMWARE", (e) => {
    const job = JSON.parse(e.data);
    if (!upsertJob(job) || job.endpoint !== state.selected) return;
    renderJob(job.endpoint);
    // The device reports its new firmware version in /3/0/3.
    if (job.status === "succeeded") read(job.endpoint, "/3/0/3");
  });
  es.addEventListener("CAMPAIGN", (e) => applyCampaign(JSON.parse(e.data)));
}

$("#firmware-link").addEventListener("click", (e) => {
  e.preventDefault();
  firmwarePage();
});
