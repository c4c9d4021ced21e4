// Section 3 of the page: labeled tiles, uploaded (drag and drop, file chooser) or painted,
// and the POST /v1/adaptations that sends them; errors are shown next to the file they name.

import { Painter } from "./paint.js";
import { inspect } from "./sizes.js";
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
const MASK_SUFFIX = /([_\-. ])(mask|masks|label|labels|gt)$/i;
const KIND_NAMES = { png: "PNG", jpeg: "JPEG", tiff: "GeoTIFF", zip: "zip" };

/** "about 4096×4096" for a pixel limit. */
const side = (pixels) => `about ${Math.floor(Math.sqrt(pixels))}×${Math.floor(Math.sqrt(pixels))}`;
const maskBase = (name) => stem(name).replace(MASK_SUFFIX, "");

function guessRole(tile, all) {
  const { file, kind } = tile;
  if (kind === "zip") return "archive";
  if (kind === null) return "other";
  if (MASK_SUFFIX.test(stem(file.name))) return "mask";
  const twin = all.find((t) => t !== tile && t.file && stem(t.file.name) === stem(file.name));
  if (twin) return kind === "png" && twin.kind !== "png" ? "mask" : "image";
  // a lone one-band or palette PNG for a multi-band model is a mask, not an image
  const model = currentModel();
  if (kind === "png" && tile.channels === 1 && model && model.bands.length > 1) return "mask";
  return "image";
}

/** Add files to the support set; every problem the page can see is shown at once. */
export async function addFiles(files) {
  const added = [];
  for (const file of [...files]) {
    const info = await inspect(file);
    added.push({ id: state.nextId++, file, ...info });
  }
  state.tiles.push(...added);
  for (const t of added) t.role = guessRole(t, state.tiles);
  renderTiles();
}

/** Client-side problems of each tile from the service's limits (null: none seen). */
function checkTiles() {
  const limits = state.limits;
  const images = state.tiles.filter((t) => t.role === "image" || t.role === "painted");
  const imageStems = new Set(images.map((t) => stem(t.file.name)));
  const maskStems = new Set(state.tiles.filter((t) => t.role === "mask").flatMap((t) => [stem(t.file.name), maskBase(t.file.name)]));
  for (const t of state.tiles) {
    const name = t.file.name;
    t.problem = null;
    if (t.role === "other" || (t.kind === null && t.role !== "painted")) {
      t.problem = `${name} is not an image: its content is not GeoTIFF, PNG or JPEG (nor a zip of tiles); remove it`;
    } else if (t.role === "archive" && t.kind !== "zip") {
      t.problem = `${name} is a ${KIND_NAMES[t.kind]} file, not a zip; choose "image" or "mask" as its role`;
    } else if (limits && t.file.size > limits.max_upload_bytes) {
      t.problem = `${name} has ${t.file.size} bytes, more than this service's upload limit of ${limits.max_upload_bytes} bytes`;
    } else if (limits && t.width && t.role !== "archive" && t.width * t.height > limits.max_tile_pixels) {
      t.problem = `${name} is ${t.width}×${t.height} = ${t.width * t.height} px, more than this service's limit of ` +
        `${limits.max_tile_pixels} px per tile (${side(limits.max_tile_pixels)}); cut it into smaller tiles`;
    } else if (t.role === "mask" && !imageStems.has(stem(name)) && !imageStems.has(maskBase(name))) {
      t.problem = `${name} is a mask without its image: add the image (same file stem, e.g. ${maskBase(name)}.jpg), or remove the mask`;
    } else if (t.role === "image" && !maskStems.has(stem(name))) {
      t.problem = `${name} is an image without a mask: add its mask (same file stem, e.g. ${stem(name)}.png or ${stem(name)}_mask.png), ` +
        "paint labels on it, or remove it";
    }
  }
  const problems = [];
  if (limits && images.length > limits.max_tiles) {
    problems.push(`${images.length} labeled tiles, more than this service's limit of ${limits.max_tiles} per adaptation: ` +
      "remove some (Remove all empties the list)");
  }
  const pixels = images.reduce((sum, t) => sum + (t.width || 0) * (t.height || 0), 0);
  if (limits && pixels > limits.max_support_pixels) {
    problems.push(`the tiles hold ${pixels} px in all, more than this service's limit of ${limits.max_support_pixels} per adaptation: remove some`);
  }
  return problems;
}

export function renderTiles() {
  const ul = $("#tile-list");
  ul.innerHTML = "";
  $("#tiles-empty").hidden = state.tiles.length > 0;
  $("#tiles-clear").hidden = state.tiles.length === 0;
  const problems = checkTiles();
  for (const t of state.tiles) {
    const size = t.width ? ` · ${t.width}×${t.height} px` : "";
    const label = t.role === "painted" ? `${t.file.name} (painted: ${t.note})` : t.file.name;
    const message = t.problem || t.error;
    const li = el("li", { "data-tile": t.id, class: message ? "bad" : "" },
      el("span", { class: "name" }, label, el("span", { class: "hint" }, size)));
    if (t.role === "painted") {
      li.append(el("span", { class: "hint" }, "image + sparse mask"));
    } else {
      const roles = t.kind === null ? ["other"] : ["image", "mask", "archive"];
      const select = el("select", { "aria-label": `Role of ${t.file.name}` },
        roles.map((r) => el("option", { value: r, selected: r === t.role }, { archive: "zip", other: "not an image" }[r] || r)));
      select.addEventListener("change", () => { t.role = select.value; t.error = null; renderTiles(); });
      li.append(select);
    }
    li.append(el("button", { type: "button", class: "danger", "aria-label": `Remove ${t.file.name}`,
      onclick: () => { state.tiles = state.tiles.filter((x) => x !== t); renderTiles(); } }, "Remove"));
    if (message) li.append(el("p", { class: "file-error", role: "alert" }, message));
    ul.append(li);
  }
  const setError = $("#tiles-problems");
  setError.textContent = problems.join("; ");
  return problems.length === 0 && !state.tiles.some((t) => t.problem);
}

export function removeAllTiles() {
  state.tiles = [];
  $("#adapt-error").textContent = "";
  renderTiles();
  $("#tile-files").focus();
}

/** The multipart form of the support set; records under which names each tile was sent. */
async function supportForm(model) {
  const form = new FormData();
  form.append("model", model.name);
  const steps = $("#steps").value.trim();
  if (steps) form.append("steps", steps);
  const images = state.tiles.filter((t) => t.role === "image");
  const imageStems = new Set(images.map((t) => stem(t.file.name)));
  for (const t of state.tiles) {
    t.sent = [t.file.name, stem(t.file.name)];
    if (t.role === "image") form.append("images", t.file, t.file.name);
    else if (t.role === "archive") form.append("archive", t.file, t.file.name);
    else if (t.role === "mask") {
      let name = t.file.name;
      const base = maskBase(name);
      if (!imageStems.has(stem(name)) && imageStems.has(base)) name = base + ext(name);
      t.sent = [t.file.name, name, stem(t.file.name)];
      form.append("masks", t.file, name);
    } else if (t.role === "painted") {
      const name = `painted_${stem(t.file.name)}`;
      t.sent = [t.file.name, name + ext(t.file.name), `${name}.png`, name];
      form.append("images", t.file, name + ext(t.file.name));
      form.append("masks", t.mask, `${name}.png`);
    }
  }
  return form;
}

/** Tiles a service error names (by the name or the stem sent, quoted as the service does). */
function namedTiles(message) {
  const named = state.tiles.filter((t) => (t.sent || [t.file.name]).some((n) => message.includes(`'${n}'`)));
  if (named.length) return named;
  // an error about a zip's content names its members: it concerns the zip
  return state.tiles.filter((t) => t.role === "archive");
}

export async function startAdaptation(event) {
  event.preventDefault();
  const model = currentModel();
  const error = $("#adapt-error");
  error.textContent = "";
  for (const t of state.tiles) t.error = null;
  if (!state.key || !model) return setStatus(error, "Enter a key and pick a base model first.", "error");
  if (!state.tiles.length) return setStatus(error, "Add labeled tiles first (upload them or paint labels).", "error");
  if (!renderTiles()) {
    const first = document.querySelector("#tile-list li.bad select, #tile-list li.bad button");
    if (first) first.focus();
    return setStatus(error, "Nothing was sent: fix or remove the files marked above first.", "error");
  }
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
    // Show the error next to the files it concerns, or under the button.
    const named = namedTiles(err.message);
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
let paintInfo = null;

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
  const info = await inspect(file);
  const limits = state.limits;
  if (info.kind === null || info.kind === "zip") {
    return setStatus(status, `${file.name} is not an image: its content is not GeoTIFF, PNG or JPEG; choose an image to paint on`, "error");
  }
  if (limits && info.width && info.width * info.height > limits.max_tile_pixels) {
    return setStatus(status, `${file.name} is ${info.width}×${info.height} = ${info.width * info.height} px, more than this ` +
      `service's limit of ${limits.max_tile_pixels} px per tile (${side(limits.max_tile_pixels)}); cut it into smaller tiles before painting`, "error");
  }
  paintInfo = info;
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
    id: state.nextId++, file: paintFile, role: "painted", mask, ...paintInfo,
    note: `${counts.size} class${counts.size === 1 ? "" : "es"}, ${((100 * total) / painter.labels.length).toFixed(1)} % of pixels`,
  });
  renderTiles();
  setStatus(status, `Added ${paintFile.name} with its painted labels to the support set.`, "ok");
}
