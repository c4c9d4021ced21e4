// Sections 4 and 5 of the page: adaptations (status, progress, report, delete) and maps
// (predict, the map view, downloads). A map on screen keeps the adaptation and raster that
// drew it (state.map): downloads always come from that adaptation, whatever the dropdown
// shows now, and each format is predicted at most once per map (the PNG on screen is the
// PNG download).

import { mapState, setOpacity, setOverlayUrl, showMap } from "./mapview.js";
import { defaultPalette, paletteColors, recolor } from "./palette.js";
import { $, api, el, pct, preview, saveBlob, setStatus, state, stem, swatch } from "./util.js";

function report(a) {
  const r = a.report || {};
  const before = r.support_miou_before ?? a.support_miou_before;
  const after = r.support_miou_after ?? a.support_miou_after;
  if (before === undefined || before === null) return a.status === "done" ? "–" : "";
  let text = `${pct(before)} → ${pct(after)}`;
  if (r.held_out_tiles !== undefined) text += ` (${r.held_out_tiles} held-out tile${r.held_out_tiles === 1 ? "" : "s"})`;
  return text;
}

const seconds = (s) => (s === null || s === undefined ? "–" : s < 60 ? `${s.toFixed(1)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`);
const since = (iso) => Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);

/** Steps asked for and kept: "asked 10 (kept 8)", or the model's default. */
function stepsText(a) {
  const model = state.models.get(a.model);
  const asked = a.steps ?? (model ? `default (${model.inner_steps})` : "default");
  const r = a.report || {};
  return r.steps_kept !== undefined ? `${asked}, kept ${r.steps_kept} of ${r.steps_tried}` : String(asked);
}

/** Median adaptation time of this key's finished adaptations of `model` (null if none). */
function expectedSeconds(model) {
  const times = state.adaptations.filter((a) => a.status === "done" && a.model === model && a.timings.adapt_s)
    .map((a) => a.timings.adapt_s).sort((x, y) => x - y);
  return times.length ? times[Math.floor(times.length / 2)] : null;
}

/** The time cell: phases from the API's timings, and progress while it runs. */
function timeCell(a) {
  const t = a.timings || {};
  const td = el("td", { class: "timing" });
  if (a.status === "queued") {
    td.append(`queued for ${seconds(since(a.created_at))}`);
  } else if (a.status === "running") {
    const elapsed = since(a.started_at);
    const expected = expectedSeconds(a.model);
    const bar = el("progress", { max: "1", "aria-label": `Progress of adaptation ${a.id.slice(0, 8)}` });
    if (expected) bar.value = Math.min(elapsed / expected, 0.99);
    td.append(`running for ${seconds(elapsed)} (queued ${seconds(t.queued_s)})`, el("br"), bar,
      expected ? el("span", { class: "hint" }, ` about ${seconds(Math.max(expected - elapsed, 0))} left`) : "");
  } else {
    td.append(`adapt ${seconds(t.adapt_s)}, total ${seconds(t.total_s)}`);
  }
  return td;
}

export async function refreshAdaptations() {
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
      el("td", { class: "tiles" }, String(a.tiles)),
      el("td", { class: "steps" }, stepsText(a)),
      status,
      timeCell(a),
      el("td", { class: "miou" }, report(a)),
      actions));
  }
  const select = $("#predict-adaptation");
  const chosen = select.value;
  const done = state.adaptations.filter((a) => a.status === "done");
  select.innerHTML = "";
  if (!done.length) select.append(el("option", { value: "" }, "no finished adaptation yet"));
  for (const a of done) select.append(el("option", { value: a.id }, describe(a)));
  if (state.watch && done.some((a) => a.id === state.watch)) {
    select.value = state.watch;
    state.watch = null;
  } else if (done.some((a) => a.id === chosen)) {
    select.value = chosen;
  }
}

/** "model · 3 tiles · 5 steps · 12:01:02 · 1a2b3c4d". */
function describe(a) {
  const steps = a.report?.steps_kept ?? a.steps;
  return `${a.model} · ${a.tiles} tile${a.tiles === 1 ? "" : "s"} · ${steps ?? "default"} steps · ` +
    `${new Date(a.created_at).toLocaleTimeString()} · ${a.id.slice(0, 8)}`;
}

async function deleteAdaptation(id) {
  try {
    await api(`/v1/adaptations/${id}`, { method: "DELETE" });
  } catch (err) {
    setStatus($("#adapt-error"), err.message, "error");
  }
  await refreshAdaptations();
  if (state.map && state.map.id === id) {
    $("#map-source").textContent = `${state.map.caption} The adaptation that drew it was deleted: the PNG ` +
      "download still works (it is this map); map the raster again for a GeoTIFF or GeoJSON.";
  }
  $("#refresh").focus();
}

// ------------------------------------------------------------------ 5. map
async function predictBlob(id, raster, format) {
  const form = new FormData();
  form.append("raster", raster, raster.name);
  const response = await api(`/v1/adaptations/${id}/predict?format=${format}`, { method: "POST", body: form });
  return response.blob();
}

export async function predict(event) {
  event.preventDefault();
  const status = $("#predict-status");
  const id = $("#predict-adaptation").value;
  const file = $("#raster-file").files[0];
  if (!id) return setStatus(status, "Pick a finished adaptation first (section 4).", "error");
  if (!file) return setStatus(status, "Choose a raster to map.", "error");
  const limits = state.limits;
  if (limits && file.size > limits.max_upload_bytes) {
    return setStatus(status, `${file.name} has ${file.size} bytes, more than this service's upload limit of ${limits.max_upload_bytes} bytes`, "error");
  }
  setStatus(status, `Mapping ${file.name}…`);
  $("#predict-button").disabled = true;
  try {
    const [base, png] = await Promise.all([preview(file), predictBlob(id, file, "png")]);
    const a = state.adaptations.find((x) => x.id === id);
    const model = a ? state.models.get(a.model) : null;
    const caption = `Map of ${file.name} (${base.width}×${base.height} px) by adaptation ${id.slice(0, 8)}` +
      (a ? ` (${describe(a)}).` : ".");
    state.map = { id, raster: file, model, caption, blobs: { png }, base, palette: model ? defaultPalette(model) : "dataset", urls: [] };
    $("#map-source").textContent = caption;
    $("#palette").value = state.map.palette;
    $("#map-view").hidden = false;
    await renderOverlay(true);
    setStatus(status, `Mapped ${file.name}; the downloads below are this map.`, "ok");
  } catch (err) {
    setStatus(status, err.message, "error");
  } finally {
    $("#predict-button").disabled = false;
  }
}

/** Draw the map on screen in the chosen palette (fresh: also place the raster). */
export async function renderOverlay(fresh = false) {
  const m = state.map;
  if (!m) return;
  m.palette = $("#palette").value;
  let blob = m.blobs.png;
  const legend = $("#map-legend");
  legend.innerHTML = "";
  if (m.model) {
    const colors = paletteColors(m.model, m.palette);
    if (m.palette !== "dataset") blob = await recolor(blob, paletteColors(m.model, "dataset"), colors);
    legend.append(...m.model.classes.map((c, i) => el("li", {}, swatch(colors[i]), c.name)));
  }
  const url = URL.createObjectURL(blob);
  m.urls.push(url);
  const opacity = Number($("#opacity").value) / 100;
  if (fresh) {
    showMap({ baseUrl: URL.createObjectURL(m.base.blob), overlayUrl: url, width: m.base.width, height: m.base.height, opacity });
  } else {
    setOverlayUrl(url);
  }
}

export function changeOpacity(value) {
  setOpacity(value / 100);
  $("#opacity-out").textContent = String(value);
}

const SUFFIX = { geotiff: "_map.tif", png: "_map.png", geojson: "_map.geojson" };
export async function download(format) {
  const status = $("#predict-status");
  const m = state.map;
  if (!m) return;
  const name = stem(m.raster.name) + SUFFIX[format];
  try {
    if (!m.blobs[format]) {
      setStatus(status, `Preparing the ${format} download from adaptation ${m.id.slice(0, 8)}…`);
      m.blobs[format] = await predictBlob(m.id, m.raster, format);
    }
    saveBlob(m.blobs[format], name);
    setStatus(status, `Downloaded ${name} (the map on screen, adaptation ${m.id.slice(0, 8)}).`, "ok");
  } catch (err) {
    const gone = err.status === 404 ? ` The adaptation that drew this map (${m.id.slice(0, 8)}) no longer exists; map the raster again.` : "";
    setStatus(status, `${err.message}.${gone}`, "error");
  }
}

export { mapState };
