// The Models panel: the same prompt and seed across the chosen models, side by side. One job per
// model (POST /api/v1/generations); each cell shows the model's name, what it is good at, and the
// settings its image was drawn with (from the image's record: steps, sampler, cfg or truncation).
"use strict";

function compareStatus(text, isError = false) {
  $("compare-status").textContent = text;
  $("compare-status").className = isError ? "error" : "";
}

onModels.push((modelList, presets) => {
  const box = $("compare-models");
  box.replaceChildren();
  for (const m of modelList) {
    const label = document.createElement("label");
    const check = document.createElement("input");
    check.type = "checkbox";
    check.value = m.id;
    check.checked = m.default;
    label.title = `good at ${m.good_at.join(", ")}. ${licenceText(m)}`;
    label.append(check, `${m.id} (${m.kind})${licenceBadge(m)}`);
    box.append(label);
  }
  const size = $("compare-size");
  while (size.options.length > 1) size.remove(1);
  for (const s of presets.sizes) size.add(new Option(`${s.name} (${s.width}x${s.height})`, s.id));
});

function settingsText(record) {
  const r = record.request;
  const parts = [`seed ${record.seed}`, `${r.width}x${r.height}`];
  if (r.steps) parts.push(`${r.steps} steps`, r.sampler, `${r.schedule} schedule`, `cfg ${r.cfg_scale}`);
  if (r.truncation !== null && r.truncation !== undefined) parts.push(`truncation ${r.truncation}`);
  return `${parts.join(", ")}; ${record.seconds} s`;
}

function gridCell(model) {
  const div = document.createElement("div");
  div.className = "card";
  div.dataset.model = model.id;
  const title = document.createElement("h3");
  title.textContent = model.id;
  const img = document.createElement("img");
  img.alt = `${model.id}: drawing`;
  img.hidden = true;
  const settings = document.createElement("p");
  settings.className = "settings";
  settings.textContent = "queued";
  div.append(title, img, settings);
  return div;
}

async function runCell(model, request, cell) {
  const settings = cell.querySelector(".settings");
  const job = await getJSON(`${api}/generations?source=web`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request) });
  await new Promise((resolve) => {
    readEvents(`${api}/jobs/${job.id}/events`, {
      started: () => { settings.textContent = "drawing..."; },
      progress: (d) => { settings.textContent = `step ${d.step} of ${d.total}`; },
      finished: async (d) => {
        const image = await getJSON(`${api}/images/${d.images[0]}`);
        const img = cell.querySelector("img");
        img.alt = `${model.id}: ${image.prompt}`;
        img.src = await blobURL(image.url);
        img.hidden = false;
        settings.textContent = settingsText(image.record);
        cell.classList.add("done");
        resolve();
      },
      failed: (d) => { cell.classList.add("failed"); settings.textContent = `failed: ${d.error}`; resolve(); },
      cancelled: () => { cell.classList.add("failed"); settings.textContent = "cancelled"; resolve(); },
    }).catch((err) => { cell.classList.add("failed"); settings.textContent = err.message; resolve(); });
  });
}

$("compare-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const chosen = [...document.querySelectorAll("#compare-models input:checked")].map((c) => models[c.value]);
  if (chosen.length < 1) return compareStatus("choose at least one model", true);
  let seed = $("compare-seed").value;
  if (seed === "") {  // one random seed, shown and shared by every model
    seed = String(Math.floor(Math.random() * 2 ** 32));
    $("compare-seed").value = seed;
  }
  $("compare-button").disabled = true;
  const cells = chosen.map(gridCell);
  $("compare-grid").replaceChildren(...cells);
  compareStatus(`drawing "${$("compare-prompt").value}" with seed ${seed} on ${chosen.length} model(s)`);
  const runs = chosen.map((m, i) => {
    const request = { prompt: $("compare-prompt").value, model: m.id, seed: Number(seed) };
    if ($("compare-size").value) request.size_preset = $("compare-size").value;
    if (m.kind !== "gan" && $("compare-steps").value !== "") request.steps = Number($("compare-steps").value);
    return runCell(m, request, cells[i]).catch((err) => {
      cells[i].classList.add("failed");
      cells[i].querySelector(".settings").textContent = err.message;
    });
  });
  await Promise.all(runs);
  $("compare-button").disabled = false;
  const failed = cells.filter((c) => c.classList.contains("failed")).length;
  compareStatus(failed ? `${failed} of ${cells.length} model(s) failed` : `done: ${cells.length} model(s)`, failed > 0);
});
