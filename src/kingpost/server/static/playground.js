// kingpost playground: pick or write an input, run it, see the answer rendered by what it is.
"use strict";
const $ = (id) => document.getElementById(id);
const PREDICT = "v1/models/model:predict";
let info = null;
let examples = {};

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function headers(extra) {
  const h = Object.assign({}, extra);
  const key = $("api-key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

async function refresh() {
  try {
    const response = await fetch("playground/info", {headers: headers({Accept: "application/json"})});
    const data = await response.json();
    if (!response.ok) { showState("failed", data.error || ("HTTP " + response.status)); return; }
    if (info === null) setup(data);
    info = data;
    showState(data.state, data.error);
    const reload = $("reload-error");
    reload.hidden = !data.reload_error;
    reload.textContent = data.reload_error ? "The last reload failed; still serving the previous version. " + data.reload_error : "";
  } catch (err) {
    showState("unreachable", String(err));
  }
}

function showState(state, detail) {
  const badge = $("state");
  badge.textContent = state;
  badge.className = "badge " + state;
  badge.title = detail || "";
}

function setup(data) {
  $("name").textContent = data.name;
  document.title = data.name + " · kingpost playground";
  $("description").textContent = data.description || "";
  examples = {};
  const select = $("examples");
  for (const ex of data.examples) {
    examples[ex.name] = ex.input;
    const option = el("option", "", ex.name);
    option.value = ex.name;
    select.appendChild(option);
  }
  if (data.examples.length) { select.value = data.examples[0].name; pick(); }
  if (data.schema && data.schema.properties) buildForm(data.schema);
}

function pick() {
  const name = $("examples").value;
  if (name in examples) $("editor").value = JSON.stringify(examples[name], null, 2);
  syncForm();
}

// -- a form from the typed input schema, kept in step with the JSON editor ---------------------

function buildForm(schema) {
  const form = $("form");
  form.hidden = false;
  for (const [field, prop] of Object.entries(schema.properties)) {
    const label = el("label", "", field + ((schema.required || []).includes(field) ? " *" : ""));
    const kind = prop.type || "";
    const input = el(kind === "boolean" ? "input" : "input");
    input.name = field;
    input.dataset.kind = kind;
    if (kind === "boolean") input.type = "checkbox";
    else if (kind === "integer" || kind === "number") input.type = "number";
    if (prop.description) input.title = prop.description;
    label.htmlFor = input.id = "field-" + field;
    input.addEventListener("input", formToEditor);
    form.append(label, input);
  }
  syncForm();
}

function formToEditor() {
  let value;
  try { value = JSON.parse($("editor").value || "{}"); } catch { value = {}; }
  if (typeof value !== "object" || value === null || Array.isArray(value)) value = {};
  for (const input of $("form").elements) {
    const kind = input.dataset.kind;
    if (kind === "boolean") value[input.name] = input.checked;
    else if (input.value === "") delete value[input.name];
    else if (kind === "integer" || kind === "number") value[input.name] = Number(input.value);
    else if (kind === "string") value[input.name] = input.value;
    else { try { value[input.name] = JSON.parse(input.value); } catch { value[input.name] = input.value; } }
  }
  $("editor").value = JSON.stringify(value, null, 2);
}

// The first image in the input (a data URL, or base64 PNG/JPEG), shown under the drop zone.
const IMAGE_STARTS = {"iVBORw0KGgo": "image/png", "/9j/": "image/jpeg", "R0lGOD": "image/gif"};

function previewInput(value) {
  let found = null;
  for (const v of (value && typeof value === "object" ? Object.values(value) : [value])) {
    if (typeof v !== "string") continue;
    found = asImage(v);
    if (found) break;
  }
  const img = $("preview");
  img.hidden = !found;
  if (found && img.src !== found) img.src = found;
}

function syncForm() {
  let value;
  try { value = JSON.parse($("editor").value); } catch { return; }
  previewInput(value);
  if ($("form").hidden) return;
  for (const input of $("form").elements) {
    const v = value && value[input.name];
    if (input.dataset.kind === "boolean") input.checked = !!v;
    else input.value = v === undefined ? "" : (typeof v === "object" ? JSON.stringify(v) : String(v));
  }
}

// -- files: an image or any file becomes a data URL (or bare base64) in the JSON ---------------

function readFile(file) {
  const reader = new FileReader();
  reader.onload = () => {
    let data = String(reader.result);
    if ($("file-as").value === "base64") data = data.slice(data.indexOf(",") + 1);
    let value;
    try { value = JSON.parse($("editor").value); } catch { value = {}; }
    if (typeof value !== "object" || value === null || Array.isArray(value)) value = {};
    value[$("file-field").value || "file"] = data;
    $("editor").value = JSON.stringify(value, null, 2);
    $("examples").value = "";
    syncForm();
  };
  reader.readAsDataURL(file);
}

// -- run ---------------------------------------------------------------------------------------

async function run() {
  const button = $("run");
  const output = $("output");
  const error = $("error");
  let body;
  try { body = JSON.stringify(JSON.parse($("editor").value)); } catch (err) {
    error.hidden = false; error.textContent = "The input is not valid JSON: " + err.message; return;
  }
  button.disabled = true;
  error.hidden = true;
  output.replaceChildren();
  output.dataset.updates = "0";
  output.dataset.done = "false";
  const id = "pg-" + Math.random().toString(16).slice(2, 10);
  const start = performance.now();
  $("status").textContent = "Running…";
  let status = "";
  try {
    const response = await fetch(PREDICT, {method: "POST", body,
      headers: headers({"Content-Type": "application/json", "X-Request-Id": id})});
    status = response.status + " " + (response.statusText || "");
    const type = response.headers.get("content-type") || "";
    if (!response.ok) {
      const text = await response.text();
      let sentence = text;
      try { sentence = JSON.parse(text).error || text; } catch { /* not JSON: show it as it is */ }
      error.hidden = false;
      error.textContent = sentence;
    } else if (type.startsWith("application/json")) {
      render(output, parseOrdered(await response.text()));
    } else {
      await stream(response, output);
    }
  } catch (err) {
    error.hidden = false;
    error.textContent = "The request failed: " + err.message;
  } finally {
    const ms = performance.now() - start;
    const line = $("status");
    line.replaceChildren(el("span", "code", status || "no answer"),
      document.createTextNode(" · " + ms.toFixed(0) + " ms · request " + id));
    output.dataset.done = "true";
    button.disabled = false;
  }
}

async function stream(response, output) {
  const pre = el("pre", "stream");
  output.appendChild(pre);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const {done, value} = await reader.read();
    if (done) break;
    pre.textContent += decoder.decode(value, {stream: true});
    output.dataset.updates = String(Number(output.dataset.updates) + 1);
  }
  pre.textContent += decoder.decode();
}

// -- JSON with objects as Maps: JSON.parse would list integer-like keys ({"7": .., "4": ..}) in
// numeric order, and a model's order (a top-3 ranking) is part of its answer.

function parseOrdered(text) {
  let i = 0;
  const token = /\s*("(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null|[{}\[\],:])/y;
  function next() {
    token.lastIndex = i;
    const m = token.exec(text);
    if (!m) throw new SyntaxError("unexpected input at " + i);
    i = token.lastIndex;
    return m[1];
  }
  function value(t) {
    if (t === "{") {
      const map = new Map();
      let k = next();
      if (k === "}") return map;
      for (;;) {
        next(); // ":"
        map.set(JSON.parse(k), value(next()));
        const sep = next();
        if (sep === "}") return map;
        k = next();
      }
    }
    if (t === "[") {
      const list = [];
      let t2 = next();
      if (t2 === "]") return list;
      for (;;) {
        list.push(value(t2));
        if (next() === "]") return list;
        t2 = next();
      }
    }
    return JSON.parse(t);
  }
  return value(next());
}

const entries = (v) => (v instanceof Map ? [...v.entries()] : Object.entries(v));
const isObject = (v) => v instanceof Map || (v !== null && typeof v === "object");

// -- render an output by what it is -------------------------------------------------------------

function isImage(v) { return typeof v === "string" && /^data:image\/[a-z+.-]+;base64,/i.test(v); }

// A bare base64 PNG/JPEG/GIF string (at least a few dozen bytes) as a data URL; else null.
function asImage(v) {
  if (isImage(v)) return v;
  if (typeof v !== "string" || v.length < 64 || !/^[A-Za-z0-9+/=\s]+$/.test(v)) return null;
  const start = Object.keys(IMAGE_STARTS).find((s) => v.startsWith(s));
  return start ? "data:" + IMAGE_STARTS[start] + ";base64," + v : null;
}

function isRecords(v) {
  return Array.isArray(v) && v.length > 0 && v.every((r) => r instanceof Map);
}

function render(target, value) {
  const image = asImage(value);
  if (image) { const img = el("img", "out"); img.src = image; target.appendChild(img); return; }
  if (isRecords(value)) { target.appendChild(table(value)); return; }
  if (isObject(value)) { target.appendChild(tree(value)); return; }
  target.appendChild(leaf(value));
}

function table(records) {
  const columns = [...new Set(records.flatMap((r) => [...r.keys()]))];
  const t = el("table");
  const head = t.createTHead().insertRow();
  for (const c of columns) head.appendChild(el("th", "", c));
  const bodyRows = t.createTBody();
  for (const r of records) {
    const row = bodyRows.insertRow();
    for (const c of columns) {
      const cell = row.insertCell();
      const v = r.get(c);
      if (v === undefined) continue;
      if (isObject(v)) cell.appendChild(tree(v)); else cell.appendChild(leaf(v));
    }
  }
  return t;
}

function tree(value) {
  const list = el("ul", "tree");
  for (const [k, v] of entries(value)) {
    const item = el("li");
    item.appendChild(el("span", "k", (Array.isArray(value) ? "[" + k + "]" : JSON.stringify(k)) + ": "));
    if (asImage(v) || isRecords(v)) render(item, v);
    else if (isObject(v)) {
      const details = el("details");
      details.open = true;
      details.appendChild(el("summary", "", Array.isArray(v) ? "[" + v.length + "]" : "{" + entries(v).length + "}"));
      details.appendChild(tree(v));
      item.appendChild(details);
    } else item.appendChild(leaf(v));
    list.appendChild(item);
  }
  return list;
}

function leaf(v) {
  const cls = typeof v === "string" ? "s" : typeof v === "number" ? "n" : "b";
  return el("span", cls, typeof v === "string" ? JSON.stringify(v) : String(v));
}

// -- wiring -------------------------------------------------------------------------------------

$("api-key").value = sessionStorage.getItem("kingpost-api-key") || "";
$("api-key").addEventListener("change", () => { sessionStorage.setItem("kingpost-api-key", $("api-key").value); refresh(); });
$("examples").addEventListener("change", pick);
$("editor").addEventListener("input", syncForm);
$("run").addEventListener("click", run);
$("file").addEventListener("change", (e) => { if (e.target.files.length) readFile(e.target.files[0]); });
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault(); drop.classList.remove("over");
  if (e.dataTransfer.files.length) readFile(e.dataTransfer.files[0]);
});
refresh();
setInterval(refresh, 2000);
