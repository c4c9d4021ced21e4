// Shared by the page's modules: DOM helpers, the /v1 client (X-API-Key), page state.

export const $ = (sel) => document.querySelector(sel);
export const KEY_STORE = "landcover.apiKey";
export const state = {
  key: null,
  local: false,
  localKey: null, // local mode's session key (kept when a wrong key is tried)
  limits: null, // GET /v1/limits
  models: new Map(), // name -> ModelInfo
  // {id, file, role: image|mask|archive|painted|other, kind, width, height, channels,
  //  problem?: seen by the page, error?: the service's, mask?: Blob, note?: string, sent?: string[]}
  tiles: [],
  adaptations: [],
  poll: null,
  map: null, // the map on screen: {id, raster, model, caption, blobs: {format: Blob}, base, palette, urls}
  nextId: 1,
};

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c);
  return node;
}
export const rgb = (c) => `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
export const swatch = (c) => el("span", { class: "swatch", style: `background:${rgb(c)}`, "aria-hidden": "true" });
export const stem = (name) => name.replace(/^.*[\\/]/, "").replace(/\.[^.]+$/, "");
export const ext = (name) => (name.match(/\.[^.]+$/) || [""])[0].toLowerCase();
export const pct = (x) => (x === null || x === undefined ? "–" : x.toFixed(3));
export function setStatus(node, text, kind = "") {
  node.textContent = text;
  node.className = node.className.replace(/\b(error|ok)\b/g, "").trim() + (kind ? ` ${kind}` : "");
}

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

export async function api(path, options = {}) {
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

export function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export function currentModel() {
  return state.models.get($("#model-select").value) || null;
}

export function legendItems(model) {
  return model.classes.map((c) =>
    el("li", {}, swatch(c.color), `${c.name}`, c.value !== null ? el("span", { class: "hint" }, ` (mask value ${c.value})`) : null),
  );
}

export async function preview(file) {
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
