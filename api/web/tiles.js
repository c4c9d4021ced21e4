// Section 3 of the page: labeled tiles, uploaded (drag and drop, file chooser) or painted,
// and the POST /v1/adaptations that sends them; errors are shown next to the file they name.

import { Painter } from "./paint.js";
import { $, api, currentModel, el, ext, preview, setStatus, state, stem, swatch } from "./util.js";
import { refreshAdaptations } from "./jobs.js";

export function maskEncoding(model) {
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

export function addFiles(files) {
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

export async function startAdaptation(event) {
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
export const painter = new Painter($("#paint-image"), $("#paint-labels"), () => paintChanged());
let paintFile = null;

export function painterClasses(model) {
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

export async function loadPaintImage() {
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

export async function addPainted() {
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
