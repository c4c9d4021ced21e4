// The analysts' page: key, base model, labeled tiles (uploaded or painted), adaptations,
// prediction with an overlay, downloads. Plain ES module, no build step, no CDN: it only
// talks to this service (/v1 with the X-API-Key header, and the page helpers under /web).

import { Painter, UNLABELED } from "./paint.js";

const $ = (sel) => document.querySelector(sel);
const KEY_STORE = "landcover.apiKey";
const state = {
  key: null,
  local: false,
  models: new Map(), // name -> ModelInfo
  tiles: [], // {id, file, role: image|mask|archive|painted, mask?: Blob, note?: string, sent?: string[]}
  adaptations: [],
  poll: null,
  raster: null,
  nextId: 1,
};

// ------------------------------------------------------------------ helpers
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c);
  return node;
}
const rgb = (c) => `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
const swatch = (c) => el("span", { class: "swatch", style: `background:${rgb(c)}`, "aria-hidden": "true" });
const stem = (name) => name.replace(/^.*[\\/]/, "").replace(/\.[^.]+$/, "");
const ext = (name) => (name.match(/\.[^.]+$/) || [""])[0].toLowerCase();
const pct = (x) => (x === null || x === undefined ? "–" : x.toFixed(3));
function setStatus(node, text, kind = "") {
  node.textContent = text;
  node.className = node.className.replace(/\b(error|ok)\b/g, "").trim() + (kind ? ` ${kind}` : "");
}

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (state.key) headers.set("X-API-Key", state.key);
  const response = await fetch(path, { ...options, headers });
  if (!response.ok) {
    let detail = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    } catch (_) { /* not JSON */ }
    throw new ApiError(response.status, detail);
  }
  return response;
}

function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// ------------------------------------------------------------------ 1. key and mode
async function init() {
  let config = { local: false, key: null };
  try {
    config = await (await fetch("/web/config")).json();
  } catch (_) { /* older service: ask for a key */ }
  state.local = config.local;
  const banner = $("#mode-banner");
  if (config.local && config.key) {
    banner.innerHTML = "";
    banner.append(
      el("strong", {}, "Local mode: "),
      "this service listens on this computer only and the page uses the key it generated for this " +
        "session, so there is nothing to set up. API keys are needed as soon as the service is " +
        "exposed to a network (",
      el("code", {}, "landcover serve --host 0.0.0.0 --api-keys …"),
      " or LANDCOVER_API_KEYS): every user then enters their key below.",
    );
    await useKey(config.key, false);
  } else {
    banner.classList.add("exposed");
    banner.textContent =
      "This service needs an API key (X-API-Key): enter the one your operator gave you. It is kept " +
      "in this browser tab only.";
    const saved = sessionStorage.getItem(KEY_STORE);
    if (saved) await useKey(saved, true);
    else $("#api-key").focus();
  }
}

async function useKey(key, remember) {
  state.key = key.trim();
  const status = $("#key-status");
  if (!state.key) {
    setStatus(status, "Enter a key first.", "error");
    return;
  }
  try {
    const models = await (await api("/v1/models")).json();
    if (remember) sessionStorage.setItem(KEY_STORE, state.key);
    $("#api-key").value = remember ? state.key : "";
    setStatus(status, state.local && !remember ? "Using the local session key." : "Key accepted.", "ok");
    showModels(models);
    await refreshAdaptations();
  } catch (err) {
    state.key = null;
    sessionStorage.removeItem(KEY_STORE);
    setStatus(status, err.message, "error");
  }
}

// ------------------------------------------------------------------ 2. models
function showModels(models) {
  state.models = new Map(models.map((m) => [m.name, m]));
  const select = $("#model-select");
  select.innerHTML = "";
  for (const m of models) select.append(el("option", { value: m.name }, m.name));
  select.disabled = models.length === 0;
  if (!models.length) select.append(el("option", { value: "" }, "no base model served"));
  showModel();
}

function currentModel() {
  return state.models.get($("#model-select").value) || null;
}

function legendItems(model) {
  return model.classes.map((c) =>
    el("li", {}, swatch(c.color), `${c.name}`, c.value !== null ? el("span", { class: "hint" }, ` (mask value ${c.value})`) : null),
  );
}

function showModel() {
  const model = currentModel();
  const box = $("#model-info");
  box.innerHTML = "";
  if (!model) return;
  box.append(
    el("dl", { class: "facts" },
      el("dt", {}, "Bands"), el("dd", {}, model.bands.join(", ")),
      el("dt", {}, "Tile size"), el("dd", {}, `${model.tile_size} px`),
      el("dt", {}, "Learner"), el("dd", {}, `${model.learner} (${model.inner_steps} steps), ${model.arch}`),
      el("dt", {}, "Mask values"), el("dd", {}, model.mask_values)),
    el("h3", {}, "Classes"),
    el("ul", { class: "legend", id: "model-classes" }, legendItems(model)),
  );
  painterClasses(model);
}

/** How a painted mask encodes classes and "unlabeled" for this model, or an error text. */
function maskEncoding(model) {
  const valueCoded = model.classes.every((c) => c.value !== null);
  const m = model.mask_values.match(/(\d+|\(\d+, \d+, \d+\)) \(ignore\)$/);
  if (!m) {
    return { error: "this model's class scheme has no value for unlabeled pixels, so painted (sparse) masks cannot be sent; upload full masks instead" };
  }
  const ignore = m[1].startsWith("(") ? m[1].slice(1, -1).split(",").map(Number) : Number(m[1]);
  if (valueCoded) {
    if (typeof ignore !== "number" || model.classes.some((c) => c.value > 255) || ignore > 255) {
      return { error: "this model's mask values do not fit an 8-bit mask; upload masks instead" };
    }
    return { values: model.classes.map((c) => c.value), colors: null, ignore };
  }
  return { values: null, colors: model.classes.map((c) => c.color), ignore };
}

// ------------------------------------------------------------------ 3. tiles
function guessRole(file, all) {
  const e = ext(file.name);
  if (e === ".zip") return "archive";
  if (/(^|[_\-. ])(mask|masks|label|labels|gt)$/i.test(stem(file.name))) return "mask";
  const twin = all.find((f) => f !== file && stem(f.name) === stem(file.name));
  if (twin) return e === ".png" && ext(twin.name) !== ".png" ? "mask" : "image";
  return "image";
}

function addFiles(files) {
  const list = [...files];
  const known = [...list, ...state.tiles.filter((t) => t.file).map((t) => t.file)];
  for (const file of list) {
    state.tiles.push({ id: state.nextId++, file, role: guessRole(file, known) });
  }
  renderTiles();
}

function renderTiles() {
  const ul = $("#tile-list");
  ul.innerHTML = "";
  $("#tiles-empty").hidden = state.tiles.length > 0;
  for (const t of state.tiles) {
    const label = t.role === "painted" ? `${t.file.name} (painted: ${t.note})` : t.file.name;
    const li = el("li", { "data-tile": t.id, class: t.error ? "bad" : "" }, el("span", { class: "name" }, label));
    if (t.role === "painted") {
      li.append(el("span", { class: "hint" }, "image + sparse mask"));
    } else {
      const select = el("select", { "aria-label": `Role of ${t.file.name}` },
        ["image", "mask", "archive"].map((r) => el("option", { value: r, selected: r === t.role }, r === "archive" ? "zip" : r)));
      select.addEventListener("change", () => { t.role = select.value; });
      li.append(select);
    }
    li.append(el("button", { type: "button", class: "danger", "aria-label": `Remove ${t.file.name}`,
      onclick: () => { state.tiles = state.tiles.filter((x) => x !== t); renderTiles(); } }, "Remove"));
    if (t.error) li.append(el("p", { class: "file-error", role: "alert" }, t.error));
    ul.append(li);
  }
}

const MASK_SUFFIX = /([_\-. ])(mask|masks|label|labels|gt)$/i;

/** The multipart form of the support set; records under which names each tile was sent. */
async function supportForm(model) {
  const form = new FormData();
  form.append("model", model.name);
  const steps = $("#steps").value.trim();
  if (steps) form.append("steps", steps);
  const images = state.tiles.filter((t) => t.role === "image");
  const imageStems = new Set(images.map((t) => stem(t.file.name)));
  for (const t of state.tiles) {
    t.sent = [t.file.name];
    if (t.role === "image") form.append("images", t.file, t.file.name);
    else if (t.role === "archive") form.append("archive", t.file, t.file.name);
    else if (t.role === "mask") {
      let name = t.file.name;
      const base = stem(name).replace(MASK_SUFFIX, "");
      if (!imageStems.has(stem(name)) && imageStems.has(base)) name = base + ext(name);
      t.sent = [t.file.name, name];
      form.append("masks", t.file, name);
    } else if (t.role === "painted") {
      const name = `painted_${stem(t.file.name)}`;
      t.sent = [t.file.name, name + ext(t.file.name), `${name}.png`];
      form.append("images", t.file, name + ext(t.file.name));
      form.append("masks", t.mask, `${name}.png`);
    }
  }
  return form;
}

async function startAdaptation(event) {
  event.preventDefault();
  const model = currentModel();
  const error = $("#adapt-error");
  error.textContent = "";
  for (const t of state.tiles) t.error = null;
  if (!state.key || !model) return setStatus(error, "Enter a key and pick a base model first.", "error");
  if (!state.tiles.length) return setStatus(error, "Add labeled tiles first (upload them or paint labels).", "error");
  const button = $("#adapt-button");
  button.disabled = true;
  try {
    const body = await (await api("/v1/adaptations", { method: "POST", body: await supportForm(model) })).json();
    state.tiles = [];
    renderTiles();
    state.watch = body.id;
    setStatus(error, `Adaptation ${body.id.slice(0, 8)} is ${body.status}; follow it below.`, "ok");
    await refreshAdaptations();
  } catch (err) {
    // Show the error next to the file it names, or under the button.
    const named = state.tiles.filter((t) => (t.sent || [t.file.name]).some((n) => err.message.includes(n)));
    for (const t of named) t.error = err.message;
    renderTiles();
    setStatus(error, named.length ? `The service rejected the tiles: see the file${named.length > 1 ? "s" : ""} marked above.` : err.message, "error");
    const first = document.querySelector("#tile-list li.bad select, #tile-list li.bad button");
    if (first) first.focus();
  } finally {
    button.disabled = false;
  }
}

// ------------------------------------------------------------------ painting
const painter = new Painter($("#paint-image"), $("#paint-labels"), () => paintChanged());
let paintFile = null;

function painterClasses(model) {
  const box = $("#paint-classes");
  box.querySelectorAll("label").forEach((n) => n.remove());
  model.classes.forEach((c, i) => {
    const input = el("input", { type: "radio", name: "paint-class", value: String(i), checked: i === painter.classIndex });
    input.addEventListener("change", () => { painter.classIndex = i; });
    box.append(el("label", {}, input, swatch(c.color), c.name));
  });
  if (painter.classIndex >= model.classes.length) painter.classIndex = 0;
  painter.setColors(model.classes.map((c) => c.color));
  paintChanged();
}

function paintChanged() {
  const model = currentModel();
  const counts = painter.counts();
  const total = [...counts.values()].reduce((a, b) => a + b, 0);
  const status = $("#paint-status");
  if (!painter.labels) return;
  const names = model ? [...counts.keys()].sort().map((i) => model.classes[i]?.name).join(", ") : "";
  const share = (100 * total) / painter.labels.length;
  setStatus(status, total ? `${total} px labeled (${share.toFixed(1)} %): ${names}.` : "Nothing painted yet: pick a class and drag over the image.");
  $("#paint-add").disabled = total === 0;
}

async function loadPaintImage() {
  const file = $("#paint-file").files[0];
  const status = $("#paint-status");
  if (!file) return;
  setStatus(status, `Reading ${file.name}…`);
  try {
    const { blob, width, height } = await preview(file);
    painter.load(await createImageBitmap(blob), width, height);
    paintFile = file;
    $("#paint-stage").hidden = false;
    paintChanged();
  } catch (err) {
    setStatus(status, err.message, "error");
  }
}

async function addPainted() {
  const model = currentModel();
  const status = $("#paint-status");
  if (!model || !paintFile) return;
  const encoding = maskEncoding(model);
  if (encoding.error) return setStatus(status, encoding.error, "error");
  const counts = painter.counts();
  const total = [...counts.values()].reduce((a, b) => a + b, 0);
  const mask = await painter.maskPng(encoding);
  state.tiles.push({
    id: state.nextId++, file: paintFile, role: "painted", mask,
    note: `${counts.size} class${counts.size === 1 ? "" : "es"}, ${((100 * total) / painter.labels.length).toFixed(1)} % of pixels`,
  });
  renderTiles();
  setStatus(status, `Added ${paintFile.name} with its painted labels to the support set.`, "ok");
}

// ------------------------------------------------------------------ 4. adaptations
function report(a) {
  const r = a.report || {};
  const before = r.support_miou_before ?? a.support_miou_before;
  const after = r.support_miou_after ?? a.support_miou_after;
  if (before === undefined || before === null) return a.status === "done" ? "–" : "";
  let text = `${pct(before)} → ${pct(after)}`;
  if (r.steps_kept !== undefined) text += ` (kept ${r.steps_kept} of ${r.steps_tried} steps; ${r.held_out_tiles} held-out tile${r.held_out_tiles === 1 ? "" : "s"})`;
  return text;
}

async function refreshAdaptations() {
  if (!state.key) return;
  try {
    state.adaptations = (await (await api("/v1/adaptations")).json()).items;
  } catch (err) {
    setStatus($("#adapt-error"), err.message, "error");
    return;
  }
  renderAdaptations();
  const active = state.adaptations.some((a) => a.status === "queued" || a.status === "running");
  clearTimeout(state.poll);
  if (active) state.poll = setTimeout(refreshAdaptations, 1000);
}

function renderAdaptations() {
  const body = $("#adaptations tbody");
  body.innerHTML = "";
  $("#adaptations-empty").hidden = state.adaptations.length > 0;
  document.body.dataset.adaptations = "loaded";
  for (const a of state.adaptations) {
    const status = el("td", {}, el("span", { class: `badge ${a.status}` }, a.status));
    if (a.status === "failed" && a.reason) status.append(el("div", { class: "reason" }, a.reason));
    const actions = el("td", {});
    if (a.status === "done") {
      actions.append(el("button", { type: "button", class: "secondary", "aria-label": `Map a raster with adaptation ${a.id.slice(0, 8)}`,
        onclick: () => { $("#predict-adaptation").value = a.id; $("#raster-file").focus(); } }, "Map with it"), " ");
    }
    actions.append(el("button", { type: "button", class: "danger", "aria-label": `Delete adaptation ${a.id.slice(0, 8)}`,
      onclick: () => deleteAdaptation(a.id) }, "Delete"));
    body.append(el("tr", { "data-id": a.id },
      el("td", {}, new Date(a.created_at).toLocaleString()),
      el("td", {}, a.model, el("div", { class: "hint" }, a.id.slice(0, 8))),
      el("td", {}, String(a.tiles)),
      status,
      el("td", { class: "miou" }, report(a)),
      actions));
  }
  const select = $("#predict-adaptation");
  const chosen = select.value;
  const done = state.adaptations.filter((a) => a.status === "done");
  select.innerHTML = "";
  if (!done.length) select.append(el("option", { value: "" }, "no finished adaptation yet"));
  for (const a of done) {
    select.append(el("option", { value: a.id }, `${a.model} · ${a.id.slice(0, 8)} · ${new Date(a.created_at).toLocaleTimeString()}`));
  }
  if (state.watch && done.some((a) => a.id === state.watch)) {
    select.value = state.watch;
    state.watch = null;
  } else if (done.some((a) => a.id === chosen)) {
    select.value = chosen;
  }
}

async function deleteAdaptation(id) {
  try {
    await api(`/v1/adaptations/${id}`, { method: "DELETE" });
  } catch (err) {
    setStatus($("#adapt-error"), err.message, "error");
  }
  await refreshAdaptations();
  $("#refresh").focus();
}

// ------------------------------------------------------------------ 5. map
async function preview(file) {
  const form = new FormData();
  form.append("raster", file, file.name);
  const model = currentModel();
  if (model) form.append("model", model.name);
  const response = await api("/web/preview", { method: "POST", body: form });
  return {
    blob: await response.blob(),
    width: Number(response.headers.get("X-Raster-Width")),
    height: Number(response.headers.get("X-Raster-Height")),
  };
}

async function predictBlob(format) {
  const id = $("#predict-adaptation").value;
  const form = new FormData();
  form.append("raster", state.raster, state.raster.name);
  const response = await api(`/v1/adaptations/${id}/predict?format=${format}`, { method: "POST", body: form });
  return response.blob();
}

async function predict(event) {
  event.preventDefault();
  const status = $("#predict-status");
  const id = $("#predict-adaptation").value;
  const file = $("#raster-file").files[0];
  if (!id) return setStatus(status, "Pick a finished adaptation first (section 4).", "error");
  if (!file) return setStatus(status, "Choose a raster to map.", "error");
  state.raster = file;
  setStatus(status, `Mapping ${file.name}…`);
  $("#predict-button").disabled = true;
  try {
    const [base, map] = await Promise.all([preview(file), predictBlob("png")]);
    $("#map-base").src = URL.createObjectURL(base.blob);
    $("#map-overlay").src = URL.createObjectURL(map);
    const a = state.adaptations.find((x) => x.id === id);
    const model = a && state.models.get(a.model);
    const legend = $("#map-legend");
    legend.innerHTML = "";
    if (model) legend.append(...legendItems(model));
    $("#map-view").hidden = false;
    setStatus(status, `Map of ${file.name} (${base.width}×${base.height} px). Download it below.`, "ok");
  } catch (err) {
    setStatus(status, err.message, "error");
  } finally {
    $("#predict-button").disabled = false;
  }
}

const SUFFIX = { geotiff: "_map.tif", png: "_map.png", geojson: "_map.geojson" };
async function download(format) {
  const status = $("#predict-status");
  if (!state.raster) return;
  setStatus(status, `Preparing the ${format} download…`);
  try {
    saveBlob(await predictBlob(format), stem(state.raster.name) + SUFFIX[format]);
    setStatus(status, `Downloaded ${stem(state.raster.name)}${SUFFIX[format]}.`, "ok");
  } catch (err) {
    setStatus(status, err.message, "error");
  }
}

// ------------------------------------------------------------------ wiring
function selectTab(tab) {
  for (const t of document.querySelectorAll('[role="tab"]')) {
    const on = t === tab;
    t.setAttribute("aria-selected", String(on));
    t.tabIndex = on ? 0 : -1;
    $(`#${t.getAttribute("aria-controls")}`).hidden = !on;
  }
  tab.focus();
}

function wire() {
  $("#key-form").addEventListener("submit", (e) => { e.preventDefault(); useKey($("#api-key").value, true); });
  $("#key-forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORE);
    state.key = null;
    $("#api-key").value = "";
    setStatus($("#key-status"), "Key forgotten.");
  });
  $("#model-select").addEventListener("change", showModel);
  $("#tile-files").addEventListener("change", (e) => { addFiles(e.target.files); e.target.value = ""; });
  const zone = $("#dropzone");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => { e.preventDefault(); zone.classList.remove("over"); addFiles(e.dataTransfer.files); });
  $("#adapt-form").addEventListener("submit", startAdaptation);
  $("#refresh").addEventListener("click", refreshAdaptations);
  $("#predict-form").addEventListener("submit", predict);
  $("#opacity").addEventListener("input", (e) => {
    $("#map-overlay").style.opacity = String(e.target.value / 100);
    $("#opacity-out").textContent = e.target.value;
  });
  $("#map-overlay").style.opacity = "0.6";
  for (const b of document.querySelectorAll(".downloads button")) b.addEventListener("click", () => download(b.dataset.format));
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  for (const t of tabs) {
    t.addEventListener("click", () => selectTab(t));
    t.addEventListener("keydown", (e) => {
      const i = tabs.indexOf(t);
      if (e.key === "ArrowRight") selectTab(tabs[(i + 1) % tabs.length]);
      if (e.key === "ArrowLeft") selectTab(tabs[(i + tabs.length - 1) % tabs.length]);
    });
  }
  $("#paint-file").addEventListener("change", loadPaintImage);
  for (const r of document.querySelectorAll('input[name="tool"]')) {
    r.addEventListener("change", () => { painter.tool = r.value; painter.vertices = []; });
  }
  $("#brush-size").addEventListener("input", (e) => {
    painter.size = Number(e.target.value);
    $("#brush-size-out").textContent = e.target.value;
  });
  $("#paint-close").addEventListener("click", () => painter.closePolygon());
  $("#paint-undo").addEventListener("click", () => painter.undo());
  $("#paint-clear").addEventListener("click", () => painter.clear());
  $("#paint-add").addEventListener("click", addPainted);
  document.addEventListener("keydown", (e) => {
    if ($("#panel-paint").hidden) return;
    if (e.key === "Enter" && painter.vertices.length) painter.closePolygon();
    if (e.key === "Escape" && painter.vertices.length) { painter.vertices = []; painter.render(0, 0, painter.width, painter.height); }
  });
}

wire();
init();
// For scripted checks (the browser tests read the painted mask through this).
window.landcoverPage = { state, painter, maskEncoding, currentModel, UNLABELED };
