// The analysts' page: key, base model, labeled tiles (uploaded or painted), adaptations,
// prediction with an overlay, downloads. Plain ES modules, no build step, no CDN: it only
// talks to this service (/v1 with the X-API-Key header, and the page helpers under /web).
//   util.js   DOM helpers, the API client, page state
//   tiles.js  uploads, painting (paint.js, png.js) and starting an adaptation
//   jobs.js   the adaptations list and the map

import { UNLABELED } from "./paint.js";
import { changeOpacity, download, mapState, predict, refreshAdaptations, renderOverlay } from "./jobs.js";
import { closestPair, defaultPalette, deltaE, paletteColors } from "./palette.js";
import { inspect } from "./sizes.js";
import {
  addFiles, addPainted, loadPaintImage, maskEncoding, painter, painterClasses, removeAllTiles, renderTiles, startAdaptation,
} from "./tiles.js";
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
    state.localKey = config.key;
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
  const previous = state.key;
  state.key = key.trim();
  const status = $("#key-status");
  if (!state.key) {
    state.key = previous;
    setStatus(status, "Enter a key first.", "error");
    return;
  }
  try {
    const [models, limits] = await Promise.all([
      api("/v1/models").then((r) => r.json()),
      api("/v1/limits").then((r) => r.json()),
    ]);
    if (remember) sessionStorage.setItem(KEY_STORE, state.key);
    $("#api-key").value = remember ? state.key : "";
    setStatus(status, state.local && !remember ? "Using the local session key." : "Key accepted.", "ok");
    showLimits(limits);
    showModels(models);
    await refreshAdaptations();
  } catch (err) {
    if (state.local && state.localKey && state.key !== state.localKey) {
      // a wrong key in local mode: keep working with the session's local key
      state.key = state.localKey;
      $("#api-key").value = "";
      setStatus(status, `${err.message}. That key was not kept; the page still uses the local session key.`, "error");
      return;
    }
    state.key = null;
    sessionStorage.removeItem(KEY_STORE);
    setStatus(status, err.message, "error");
  }
}

/** Bound the page's inputs by the service's own limits (GET /v1/limits). */
function showLimits(limits) {
  state.limits = limits;
  const steps = $("#steps");
  steps.max = String(limits.max_steps);
  steps.title = `1 to ${limits.max_steps} (this service's limit)`;
  const side = Math.floor(Math.sqrt(limits.max_tile_pixels));
  $("#tiles-limits").textContent =
    `This service takes up to ${limits.max_tiles} labeled tiles of up to ${limits.max_tile_pixels} px each ` +
    `(about ${side}×${side}), and cuts them into the crops the adaptation uses; up to ${limits.max_steps} steps.`;
  renderTiles();
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
    state.key = state.local ? state.localKey : null;
    $("#api-key").value = "";
    setStatus($("#key-status"), "Key forgotten.");
  });
  $("#model-select").addEventListener("change", showModel);
  $("#tile-files").addEventListener("change", async (e) => { await addFiles(e.target.files); e.target.value = ""; });
  $("#tiles-clear").addEventListener("click", removeAllTiles);
  const zone = $("#dropzone");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => { e.preventDefault(); zone.classList.remove("over"); addFiles(e.dataTransfer.files); });
  $("#adapt-form").addEventListener("submit", startAdaptation);
  $("#refresh").addEventListener("click", refreshAdaptations);
  $("#predict-form").addEventListener("submit", predict);
  $("#opacity").addEventListener("input", (e) => changeOpacity(Number(e.target.value)));
  $("#palette").addEventListener("change", () => renderOverlay());
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
window.landcoverPage = {
  state, painter, maskEncoding, currentModel, UNLABELED, mapState, inspect, closestPair, defaultPalette, deltaE, paletteColors,
};
