// Brand kits in the Tools panel: shown for a tool with a `brand` option (the marketing tool). The picker
// lists your kits (GET /api/v1/brands); the tool job then sends `"brand": "NAME"` and the server uses
// that saved kit. "Add a brand kit" saves one (POST /api/v1/brands: colours, fonts of GET
// /api/v1/fonts, a logo sent as a data URL) and picks it.
"use strict";

let brandsLoaded = false;

function brandStatus(text, isError = false) {
  $("brand-status").textContent = text;
  $("brand-status").className = isError ? "error" : "";
}

function showBrands(tool) {
  const wanted = Boolean(tool.options.properties?.brand);
  $("tool-brand-box").hidden = !wanted;
  if (wanted && !brandsLoaded) {
    brandsLoaded = true;
    Promise.all([loadBrands(), loadFonts()]).catch((err) => {
      brandsLoaded = false;
      brandStatus(`could not load the brand kits: ${err.message}`, true);
    });
  }
}

async function loadBrands(pick = null) {
  const { brands } = await getJSON(`${api}/brands`);
  const select = $("tool-brand");
  const keep = pick ?? select.value;
  while (select.options.length > 1) select.remove(1);
  for (const b of brands) {
    const c = b.colours;
    select.add(new Option(`${b.name} (${c.primary}, ${c.secondary}; ${b.fonts.headline})`, b.name));
  }
  select.value = brands.some((b) => b.name === keep) ? keep : "";
  showBrandLogo(brands.find((b) => b.name === select.value));
  select.onchange = () => showBrandLogo(brands.find((b) => b.name === select.value));
}

function showBrandLogo(brand) {
  const img = $("tool-brand-logo");
  img.hidden = !brand?.logo_url;
  if (brand?.logo_url) blobURL(brand.logo_url).then((url) => { img.src = url; }, () => { img.hidden = true; });
}

async function loadFonts() {
  const fonts = await getJSON(`${api}/fonts`);
  for (const [id, fallback] of [["brand-headline", "dejavu-sans-bold"], ["brand-body", "dejavu-sans"]]) {
    const select = $(id);
    select.replaceChildren();
    for (const f of fonts) {
      const option = new Option(`${f.name}${f.installed ? "" : " (not installed)"}`, f.id);
      option.disabled = !f.installed;
      select.add(option);
    }
    select.value = fallback;
  }
}

function fileDataURL(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(new Error(`could not read ${file.name}`));
    reader.readAsDataURL(file);
  });
}

$("brand-save").addEventListener("click", async () => {
  const name = $("brand-name").value.trim();
  if (!name) return brandStatus("give the kit a name", true);
  const body = {
    name,
    colours: Object.fromEntries(["primary", "secondary", "background", "text"].map((k) => [k, $(`brand-${k}`).value])),
    fonts: { headline: $("brand-headline").value, body: $("brand-body").value },
  };
  const file = $("brand-logo-file").files[0];
  $("brand-save").disabled = true;
  try {
    if (file) body.logo = await fileDataURL(file);
    const saved = await getJSON(`${api}/brands`, {
      method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" },
    });
    await loadBrands(saved.name);
    brandStatus(`saved brand kit ${saved.name}`);
    $("brand-add").open = false;
  } catch (err) {
    brandStatus(err.message, true);
  } finally {
    $("brand-save").disabled = false;
  }
});
onStart.push(() => { brandsLoaded = false; });  // (re)started, e.g. with another key: the kits are reloaded
