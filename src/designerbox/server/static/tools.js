// The Tools panel: every creation tool of GET /api/v1/tools (none is named here). Pick a tool and a
// preset, upload images (or give a prompt, for tools that draw their input), run: the job is
// POSTed as multipart to /api/v1/tools/{name}, followed over its events, and its outputs shown;
// they are in the gallery like generated images. The option fields are built from each tool's
// JSON schema; a field left empty is not sent, so the preset's (or the tool's) value applies.
"use strict";

let tools = {};            // name -> tool (from GET /api/v1/tools)
let currentToolJob = null;

function toolStatus(text, isError = false) {
  $("tool-status").textContent = text;
  $("tool-status").className = isError ? "error" : "";
}

async function loadTools() {
  const list = await getJSON(`${api}/tools`);
  tools = {};
  $("tool").replaceChildren();
  for (const t of list) {
    if (t.error) {  // listed, but it cannot run on this server
      const option = new Option(`${t.name}: unavailable (${t.error})`, t.name);
      option.disabled = true;
      $("tool").add(option);
      continue;
    }
    tools[t.name] = t;
    $("tool").add(new Option(`${t.name}: ${t.summary}`, t.name));
    $("gallery-model").add(new Option(`tool: ${t.name}`, `tool:${t.name}`));
  }
  showTool();
}
onStart.push(() => loadTools().catch((err) => toolStatus(`could not load the tools: ${err.message}`, true)));

// a simple type of the schema (enum, number, boolean, string, list of strings), or null: left to the preset
function fieldKind(prop, schema) {
  const options = prop.anyOf ? prop.anyOf.filter((p) => p.type !== "null") : [prop];
  if (options.length !== 1) return null;
  let p = options[0];
  if (p.$ref) p = schema.$defs?.[p.$ref.split("/").pop()] || {};
  if (p.enum) return { kind: "enum", values: p.enum };
  if (p.type === "integer" || p.type === "number") return { kind: "number", step: p.type === "integer" ? 1 : "any", min: p.minimum, max: p.maximum };
  if (p.type === "boolean") return { kind: "boolean" };
  if (p.type === "string") return { kind: "string" };
  if (p.type === "array" && p.items?.type === "string") return { kind: "list" };
  return null;
}

function showTool() {
  const t = tools[$("tool").value];
  if (!t) return;
  $("tool-info").textContent = `${t.name} ${t.version}: ${t.summary}`;
  const preset = $("tool-preset");
  while (preset.options.length > 1) preset.remove(1);
  for (const p of t.presets) preset.add(new Option(`${p.name} (${p.id})`, p.id));
  $("tool-prompt-label").hidden = !t.prompt_field;
  showBrands(t);  // brands.js: the kit picker, for a tool with a `brand` option
  $("tool-prompt").value = "";
  const box = $("tool-options");
  box.replaceChildren();
  for (const [name, prop] of Object.entries(t.options.properties || {})) {
    if (name === t.prompt_field) continue;
    const kind = fieldKind(prop, t.options);
    if (!kind) continue;
    const label = document.createElement("label");
    label.title = prop.description || "";
    label.append(name);
    let input;
    if (kind.kind === "enum" || kind.kind === "boolean") {
      input = document.createElement("select");
      input.add(new Option("(default)", ""));
      for (const v of kind.kind === "boolean" ? [true, false] : kind.values) input.add(new Option(String(v), JSON.stringify(v)));
    } else {
      input = document.createElement("input");
      if (kind.kind === "number") {
        input.type = "number";
        input.step = kind.step;
        if (kind.min !== undefined) input.min = kind.min;
        if (kind.max !== undefined) input.max = kind.max;
      }
      input.placeholder = prop.default !== undefined ? `default ${JSON.stringify(prop.default)}` : "";
      if (kind.kind === "list") input.placeholder = "comma-separated";
    }
    input.dataset.option = name;
    input.dataset.kind = kind.kind;
    label.append(input);
    box.append(label);
  }
}
$("tool").addEventListener("change", showTool);

function toolOptions() {
  const t = tools[$("tool").value];
  const options = {};
  for (const input of document.querySelectorAll("#tool-options [data-option]")) {
    const value = input.value.trim();
    if (value === "") continue;
    const kind = input.dataset.kind;
    options[input.dataset.option] = kind === "number" ? Number(value)
      : kind === "list" ? value.split(",").map((s) => s.trim()).filter(Boolean)
      : kind === "enum" || kind === "boolean" ? JSON.parse(value) : value;
  }
  if (t.prompt_field && $("tool-prompt").value.trim()) options[t.prompt_field] = $("tool-prompt").value.trim();
  if (t.options.properties?.brand && $("tool-brand").value) options.brand = $("tool-brand").value;  // a saved kit's name
  return options;
}

$("tool-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = $("tool").value;
  const body = new FormData();
  for (const file of $("tool-files").files) body.append("inputs", file, file.name);
  body.append("options", JSON.stringify(toolOptions()));
  if ($("tool-preset").value) body.append("preset", $("tool-preset").value);
  $("tool-results").replaceChildren();
  $("tool-button").disabled = true;
  try {
    const job = await getJSON(`${api}/tools/${encodeURIComponent(name)}?source=web`, { method: "POST", body });
    toolStatus(`queued (job ${job.id})`);
    followTool(job.id);
  } catch (err) {
    toolStatus(err.message, true);
    $("tool-button").disabled = false;
  }
});

$("tool-cancel").addEventListener("click", async () => {
  if (currentToolJob) await getJSON(`${api}/jobs/${currentToolJob}/cancel`, { method: "POST" }).catch((e) => toolStatus(e.message, true));
});

function followTool(jobId) {
  currentToolJob = jobId;
  $("tool-cancel").hidden = false;
  $("tool-progress").hidden = false;
  $("tool-progress").value = 0;
  const done = () => {
    currentToolJob = null;
    $("tool-cancel").hidden = true;
    $("tool-button").disabled = false;
  };
  readEvents(`${api}/jobs/${jobId}/events`, {
    started: () => toolStatus("running..."),
    progress: (d) => {
      $("tool-progress").value = d.total ? d.step / d.total : 0;
      toolStatus(`image ${d.step} of ${d.total} done`);
    },
    finished: async (d) => {
      done();
      $("tool-progress").value = 1;
      toolStatus(`done: ${d.images.length} output(s)`);
      for (const id of d.images) {
        const image = await getJSON(`${api}/images/${id}`);
        const c = card(image);
        const t = image.record.tool;
        c.querySelector(".prompt").textContent = `${t.name} ${t.output} (${image.size}${t.preset ? `, preset ${t.preset}` : ""})`;
        $("tool-results").append(c);
      }
    },
    failed: (d) => { done(); toolStatus(`failed: ${d.error}`, true); },
    cancelled: () => { done(); toolStatus("cancelled"); },
  }).catch((err) => { done(); toolStatus(err.message, true); });
}

// "Reuse settings" on a tool's image: the Tools panel with its tool, preset and options
function reuseToolSettings(record) {
  $("tool").value = record.tool.name;
  showTool();
  $("tool-preset").value = record.tool.preset || "";
  for (const [name, value] of Object.entries(record.request.options || {})) {
    const input = document.querySelector(`#tool-options [data-option="${name}"]`);
    if (!input || (value && typeof value === "object" && !Array.isArray(value))) continue;  // a stored image: chosen again
    input.value = input.tagName === "SELECT" ? JSON.stringify(value) : Array.isArray(value) ? value.join(",") : value;
  }
  showPanel("tools");
  toolStatus("settings of the image loaded: choose the image(s) again and Run");
}
