// The analysts' page: key, base model, labeled tiles (uploaded or painted), adaptations,
// prediction with an overlay, downloads. Plain ES modules, no build step, no CDN: it only
// talks to this service (/v1 with the X-API-Key header, and the page helpers under /web).
//   util.js   DOM helpers, the API client, page state
//   tiles.js  uploads, painting (paint.js, png.js) and starting an adaptation
//   jobs.js   the adaptations list and the map

import { UNLABELED } from "./paint.js";
import { download, predict, refreshAdaptations } from "./jobs.js";
import { addFiles, addPainted, loadPaintImage, maskEncoding, painter, painterClasses, startAdaptation } from "./tiles.js";
import { $, KEY_STORE, api, currentModel, el, legendItems, setStatus, state } from "./util.js";

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
