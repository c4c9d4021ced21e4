// Sections 4 and 5 of the page: adaptations (status, report, delete) and maps (predict,
// overlay, downloads).

import { $, api, el, legendItems, pct, preview, saveBlob, setStatus, state, stem } from "./util.js";

function report(a) {
  const r = a.report || {};
  const before = r.support_miou_before ?? a.support_miou_before;
  const after = r.support_miou_after ?? a.support_miou_after;
  if (before === undefined || before === null) return a.status === "done" ? "–" : "";
  let text = `${pct(before)} → ${pct(after)}`;
  if (r.steps_kept !== undefined) text += ` (kept ${r.steps_kept} of ${r.steps_tried} steps; ${r.held_out_tiles} held-out tile${r.held_out_tiles === 1 ? "" : "s"})`;
  return text;
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
async function predictBlob(format) {
  const id = $("#predict-adaptation").value;
  const form = new FormData();
  form.append("raster", state.raster, state.raster.name);
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
export async function download(format) {
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
