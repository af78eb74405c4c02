// The DesignerBox page: plain JavaScript over the REST API (/api/v1), no build step.
// Where the server needs an API key, the key typed in the header is kept in localStorage and sent
// as "Authorization: Bearer <key>" with every request: images and downloads are fetched with it
// (as blob URLs) and job events are read from a fetch stream, since <img> and EventSource cannot
// send headers.
"use strict";

const api = "/api/v1";
const $ = (id) => document.getElementById(id);
const KEY_ITEM = "designerbox-api-key";
let models = {};          // id -> model (from GET /api/v1/models)
let currentJob = null;    // the job the Generate panel follows
const onStart = [];       // loaders of the other panels (tools.js, models.js): run by start()
const onModels = [];      // called with the text-to-image models once they are loaded

function authHeaders(headers = {}) {
  const key = localStorage.getItem(KEY_ITEM);
  return key ? { ...headers, Authorization: `Bearer ${key}` } : headers;
}

async function getJSON(url, options = {}) {
  const response = await fetch(url, { ...options, headers: authHeaders(options.headers) });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) throw new Error(`${errorText(body)}: paste an API key above`);
  if (!response.ok) throw new Error(errorText(body) || `${response.status} ${response.statusText}`);
  return body;
}

async function blobURL(url) {
  const response = await fetch(url, { headers: authHeaders() });
  if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
  return URL.createObjectURL(await response.blob());
}

// Server-Sent Events over fetch (with the key): calls handlers[event](data) for each event
async function readEvents(url, handlers, signal) {
  const response = await fetch(url, { headers: authHeaders({ Accept: "text/event-stream" }), signal });
  if (!response.ok) throw new Error(errorText(await response.json().catch(() => ({}))) || `${response.status}`);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let kind = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) kind = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      if (data && handlers[kind]) handlers[kind](JSON.parse(data));
    }
  }
}

// -- the API key ---------------------------------------------------------------------------------
$("api-key").value = localStorage.getItem(KEY_ITEM) || "";
$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("api-key").value.trim();
  if (key) localStorage.setItem(KEY_ITEM, key); else localStorage.removeItem(KEY_ITEM);
  start();
});

async function showWho() {
  const me = await getJSON(`${api}/me`);
  $("whoami").textContent = me.keys_required ? `${me.name} (${me.role})` : "single-user mode";
}

function errorText(body) {
  if (typeof body.detail === "string") return body.detail;
  if (Array.isArray(body.detail)) return body.detail.map((e) => e.msg).join("; ");
  return "";
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

// -- tabs --------------------------------------------------------------------------------------
for (const tab of document.querySelectorAll(".tab")) {
  tab.addEventListener("click", () => showPanel(tab.dataset.panel));
}

function showPanel(name) {
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.panel === name);
  for (const panel of document.querySelectorAll(".panel")) panel.classList.toggle("active", panel.id === name);
  if (name === "gallery") loadGallery();
}

// -- choices: models, styles, sizes ------------------------------------------------------------
async function loadChoices() {
  models = {};
  for (const id of ["model", "style", "size", "gallery-model"]) {
    const select = $(id);
    while (select.options.length > (id === "model" ? 0 : 1)) select.remove(select.options.length - 1);
  }
  const [modelList, presets] = await Promise.all([
    getJSON(`${api}/models?text_to_image=true`), getJSON(`${api}/presets`)]);
  for (const m of modelList.models) {
    models[m.id] = m;
    const label = `${m.id}${m.default ? " (default)" : ""}${licenceBadge(m)}`;
    const option = new Option(label, m.id, m.default, m.default);
    option.title = licenceText(m);
    $("model").add(option);
    $("gallery-model").add(new Option(m.id, m.id));
  }
  for (const f of onModels) f(modelList.models, presets);
  for (const s of presets.styles) $("style").add(new Option(s.name, s.id));
  for (const s of presets.sizes) $("size").add(new Option(`${s.name} (${s.width}x${s.height})`, s.id));
  showModelInfo();
}

// a model's licence flag (GET /api/v1/models: commercial_use yes / conditions / no / unknown)
const LICENCE_BADGES = { yes: "", conditions: " [commercial: conditions]", no: " [non-commercial]", unknown: " [licence unknown]" };
function licenceBadge(m) { return LICENCE_BADGES[m.commercial_use] ?? ""; }
function licenceText(m) {
  return `Licence: ${m.licence_name || m.licence} (${m.licence}); commercial use: ${m.commercial_use}` +
    (m.licence_condition ? ` (${m.licence_condition})` : "");
}

function showModelInfo() {
  const m = models[$("model").value];
  if (!m) return;
  const gan = m.kind === "gan";
  const size = m.default_size || m.native_size;
  const defaults = m.defaults ? `; defaults: ${m.defaults.steps} steps, ${m.defaults.sampler}, cfg ${m.defaults.cfg_scale}` : "";
  $("model-info").textContent = `${m.name}: good at ${m.good_at.join(", ")}. ${m.kind}, draws ${m.native_size.join("x")}` +
    `, default size ${size.join("x")}${defaults}${gan ? " (a GAN: one network call, no steps or cfg)" : ""}. ${licenceText(m)}`;
  for (const el of document.querySelectorAll(".diffusion-only")) {
    el.hidden = gan;
    el.querySelector("input").disabled = gan;
  }
}
$("model").addEventListener("change", showModelInfo);

// -- generate ----------------------------------------------------------------------------------
function requestFromForm() {
  const req = { prompt: $("prompt").value, model: $("model").value, batch_size: Number($("batch").value || 1) };
  const m = models[req.model];
  if ($("style").value) req.style = $("style").value;
  if ($("size").value) req.size_preset = $("size").value;
  if ($("seed").value !== "") req.seed = Number($("seed").value);
  if (m && m.kind !== "gan") {
    if ($("negative").value) req.negative_prompt = $("negative").value;
    if ($("steps").value !== "") req.steps = Number($("steps").value);
    if ($("cfg").value !== "") req.cfg_scale = Number($("cfg").value);
  }
  return req;
}

$("generate-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("results").replaceChildren();
  $("generate-button").disabled = true;
  try {
    const job = await getJSON(`${api}/generations?source=web`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(requestFromForm()) });
    setStatus(`queued (job ${job.id})`);
    follow(job.id);
  } catch (err) {
    setStatus(err.message, true);
    $("generate-button").disabled = false;
  }
});

$("cancel-button").addEventListener("click", async () => {
  if (currentJob) await getJSON(`${api}/jobs/${currentJob}/cancel`, { method: "POST" }).catch((e) => setStatus(e.message, true));
});

function follow(jobId) {
  currentJob = jobId;
  $("cancel-button").hidden = false;
  $("progress").hidden = false;
  $("progress").value = 0;
  const done = () => {
    currentJob = null;
    $("cancel-button").hidden = true;
    $("generate-button").disabled = false;
  };
  readEvents(`${api}/jobs/${jobId}/events`, {
    started: () => setStatus("drawing..."),
    progress: (d) => {
      $("progress").value = d.total ? d.step / d.total : 0;
      setStatus(`step ${d.step} of ${d.total}`);
      if (d.preview) {
        $("preview").src = `data:image/png;base64,${d.preview}`;
        $("preview").hidden = false;
      }
    },
    finished: async (d) => {
      done();
      $("progress").value = 1;
      $("preview").hidden = true;
      setStatus(`done: ${d.images.length} image(s)`);
      for (const id of d.images) $("results").append(card(await getJSON(`${api}/images/${id}`)));
    },
    failed: (d) => { done(); setStatus(`failed: ${d.error}`, true); },
    cancelled: () => { done(); setStatus("cancelled"); },
  }).catch((err) => { done(); setStatus(err.message, true); });
}

// -- gallery -----------------------------------------------------------------------------------
function card(image) {
  const div = document.createElement("div");
  div.className = "card";
  div.dataset.id = image.id;
  const img = document.createElement("img");
  img.alt = image.prompt;
  blobURL(image.url).then((url) => { img.src = url; }, (err) => { img.alt = err.message; });
  const prompt = document.createElement("p");
  prompt.className = "prompt";
  prompt.textContent = `${image.prompt} (${image.model}, seed ${image.seed}, ${image.size})`;
  const actions = document.createElement("div");
  actions.className = "actions";
  const reuse = document.createElement("button");
  reuse.textContent = "Reuse settings";
  reuse.addEventListener("click", () => reuseSettings(image.id));
  const download = document.createElement("a");
  download.textContent = "Download";
  download.href = "#";
  download.addEventListener("click", async (event) => {
    if (download.download) return;  // the second, synthetic click below: let the browser save the blob
    event.preventDefault();
    download.href = await blobURL(`${image.url}?download=true`);
    download.download = `${image.id}-${image.seed}.png`;
    download.click();
  });
  const remove = document.createElement("button");
  remove.textContent = "Delete";
  remove.addEventListener("click", async () => {
    await getJSON(`${api}/images/${image.id}`, { method: "DELETE" });
    div.remove();
  });
  const check = document.createElement("button");
  check.textContent = "Verify";
  check.title = "Draw it again from its record and compare with the file";
  const verdict = document.createElement("p");
  verdict.className = "verify";
  check.addEventListener("click", () => verifyImage(image.id, check, verdict));
  actions.append(reuse, download, check, remove);
  div.append(img, prompt, actions, verdict);
  return div;
}

// -- verify: a job replays the image from its record and diffs it (POST /api/v1/images/{id}/verify) --------
async function verifyImage(imageId, button, out) {
  button.disabled = true;
  out.className = "verify";
  out.textContent = "verifying: queued";
  const done = (text, cls) => { out.textContent = text; out.classList.add(cls); button.disabled = false; };
  try {
    const job = await getJSON(`${api}/images/${imageId}/verify?source=web`, { method: "POST" });
    await readEvents(`${api}/jobs/${job.id}/events`, {
      progress: (d) => { out.textContent = `verifying: step ${d.step} of ${d.total}`; },
      finished: (d) => done(...verifyText(d.result)),
      failed: (d) => done(`verify failed: ${d.error}`, "error"),
      cancelled: () => done("verify cancelled", "error"),
    });
  } catch (err) {
    done(err.message, "error");
  }
}

function verifyText(r) {
  let text;
  if (r.identical) text = "identical: the replay gives the same pixels";
  else if (r.max_abs_diff === null) text = `differs: the replay is ${r.replay_size.join("x")}, the file ${r.size.join("x")}`;
  else text = `${r.values_differing} of ${r.values} values differ, at most ${r.max_abs_diff} levels`;
  if (r.recipe_changes.length) text += `. Since it was drawn: ${r.recipe_changes.join("; ")}`;
  return [text, r.identical ? "same" : "differs"];
}

async function reuseSettings(imageId) {
  const image = await getJSON(`${api}/images/${imageId}`);
  if (image.record.task === "tool") return reuseToolSettings(image.record);  // tools.js
  const r = image.record.request;
  $("prompt").value = r.prompt;
  $("model").value = r.model;
  showModelInfo();
  $("negative").value = r.negative_prompt || "";
  $("style").value = r.style || "";
  $("size").value = r.size_preset || "";
  $("steps").value = r.steps ?? "";
  $("cfg").value = r.cfg_scale ?? "";
  $("seed").value = image.record.seed;
  $("batch").value = 1;
  showPanel("generate");
  setStatus("settings of the image loaded: Generate draws it again");
}

async function loadGallery() {
  const params = new URLSearchParams({ limit: "100" });
  if ($("search").value) params.set("q", $("search").value);
  if ($("gallery-model").value) params.set("model", $("gallery-model").value);
  if ($("since").value) params.set("since", `${$("since").value}T00:00:00`);
  try {
    const list = await getJSON(`${api}/images?${params}`);
    $("gallery-grid").replaceChildren(...list.images.map(card));
    if (!list.images.length) $("gallery-grid").textContent = "no images yet";
  } catch (err) {
    $("gallery-grid").textContent = err.message;
  }
}
$("gallery-form").addEventListener("submit", (e) => { e.preventDefault(); loadGallery(); });

function start() {
  setStatus("");
  showWho().catch(() => { $("whoami").textContent = ""; });
  loadChoices().catch((err) => setStatus(`could not load models: ${err.message}`, true));
  for (const f of onStart) f();
}
window.addEventListener("DOMContentLoaded", start);  // after tools.js and models.js have registered
