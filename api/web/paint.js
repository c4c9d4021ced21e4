// The painting tool: brush, eraser and polygons of class labels over an image.
// Labels live in a Uint8Array of class indices at the image's full resolution; 255 means
// unlabeled. The label canvas shows them in the class colours over the image canvas.

import { encodePng } from "./png.js";

export const UNLABELED = 255;
const ALPHA = 170;

export class Painter {
  /**
   * @param {HTMLCanvasElement} imageCanvas shows the image
   * @param {HTMLCanvasElement} labelCanvas receives pointer input, shows the labels
   * @param {(painter: Painter) => void} onChange called after every edit
   */
  constructor(imageCanvas, labelCanvas, onChange) {
    this.imageCanvas = imageCanvas;
    this.labelCanvas = labelCanvas;
    this.onChange = onChange;
    this.colors = [];
    this.classIndex = 0;
    this.tool = "brush";
    this.size = 12;
    this.vertices = [];
    this.history = [];
    this.labels = null;
    this.last = null;
    labelCanvas.addEventListener("pointerdown", (e) => this.down(e));
    labelCanvas.addEventListener("pointermove", (e) => this.move(e));
    labelCanvas.addEventListener("pointerup", () => this.up());
    labelCanvas.addEventListener("pointerleave", () => this.up());
    labelCanvas.addEventListener("dblclick", () => this.closePolygon());
  }

  /** Show `bitmap` scaled to `width`×`height` (the raster's size) and clear the labels. */
  load(bitmap, width, height) {
    for (const c of [this.imageCanvas, this.labelCanvas]) {
      c.width = width;
      c.height = height;
    }
    this.imageCanvas.getContext("2d").drawImage(bitmap, 0, 0, width, height);
    this.width = width;
    this.height = height;
    this.labels = new Uint8Array(width * height).fill(UNLABELED);
    this.view = this.labelCanvas.getContext("2d").createImageData(width, height);
    this.history = [];
    this.vertices = [];
    this.render(0, 0, width, height);
  }

  setColors(colors) {
    this.colors = colors;
    if (this.labels) this.render(0, 0, this.width, this.height);
  }

  point(e) {
    const r = this.labelCanvas.getBoundingClientRect();
    return [
      Math.floor(((e.clientX - r.left) / r.width) * this.width),
      Math.floor(((e.clientY - r.top) / r.height) * this.height),
    ];
  }

  value() {
    return this.tool === "eraser" ? UNLABELED : this.classIndex;
  }

  snapshot() {
    this.history.push(this.labels.slice());
    if (this.history.length > 20) this.history.shift();
  }

  down(e) {
    if (!this.labels) return;
    e.preventDefault();
    const [x, y] = this.point(e);
    if (this.tool === "polygon") {
      this.vertices.push([x, y]);
      this.drawOutline();
      return;
    }
    this.labelCanvas.setPointerCapture?.(e.pointerId);
    this.snapshot();
    this.last = [x, y];
    this.stamp(x, y, this.value());
  }

  move(e) {
    if (!this.last || !this.labels) return;
    const [x, y] = this.point(e);
    const [x0, y0] = this.last;
    const step = Math.max(1, this.size / 4);
    const n = Math.ceil(Math.hypot(x - x0, y - y0) / step);
    for (let i = 1; i <= n; i++) this.stamp(x0 + ((x - x0) * i) / n, y0 + ((y - y0) * i) / n, this.value());
    this.last = [x, y];
  }

  up() {
    if (this.last) {
      this.last = null;
      this.onChange(this);
    }
  }

  /** A disc of diameter `size` at (cx, cy). */
  stamp(cx, cy, value) {
    const r = this.size / 2;
    const x0 = Math.max(0, Math.floor(cx - r)), x1 = Math.min(this.width - 1, Math.ceil(cx + r));
    const y0 = Math.max(0, Math.floor(cy - r)), y1 = Math.min(this.height - 1, Math.ceil(cy + r));
    for (let y = y0; y <= y1; y++) {
      for (let x = x0; x <= x1; x++) {
        if ((x + 0.5 - cx) ** 2 + (y + 0.5 - cy) ** 2 <= r * r + 0.25) this.labels[y * this.width + x] = value;
      }
    }
    if (x1 >= x0 && y1 >= y0) this.render(x0, y0, x1 - x0 + 1, y1 - y0 + 1);
  }

  /** Fill the polygon drawn so far (even-odd rule at pixel centres). */
  closePolygon() {
    const v = this.vertices;
    this.vertices = [];
    if (!this.labels || v.length < 3) {
      this.render(0, 0, this.width, this.height);
      return false;
    }
    this.snapshot();
    const ys = v.map((p) => p[1]);
    const y0 = Math.max(0, Math.min(...ys)), y1 = Math.min(this.height - 1, Math.max(...ys));
    const value = this.tool === "eraser" ? UNLABELED : this.classIndex;
    for (let y = y0; y <= y1; y++) {
      const yc = y + 0.5;
      const xs = [];
      for (let i = 0; i < v.length; i++) {
        const [ax, ay] = v[i], [bx, by] = v[(i + 1) % v.length];
        if ((ay <= yc && by > yc) || (by <= yc && ay > yc)) xs.push(ax + ((yc - ay) * (bx - ax)) / (by - ay));
      }
      xs.sort((a, b) => a - b);
      for (let k = 0; k + 1 < xs.length; k += 2) {
        const from = Math.max(0, Math.ceil(xs[k] - 0.5)), to = Math.min(this.width - 1, Math.floor(xs[k + 1] - 0.5));
        for (let x = from; x <= to; x++) this.labels[y * this.width + x] = value;
      }
    }
    this.render(0, 0, this.width, this.height);
    this.onChange(this);
    return true;
  }

  drawOutline() {
    this.render(0, 0, this.width, this.height);
    const ctx = this.labelCanvas.getContext("2d");
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = Math.max(1, this.width / 300);
    ctx.beginPath();
    this.vertices.forEach(([x, y], i) => (i ? ctx.lineTo(x + 0.5, y + 0.5) : ctx.moveTo(x + 0.5, y + 0.5)));
    ctx.stroke();
  }

  undo() {
    if (!this.history.length) return;
    this.labels = this.history.pop();
    this.render(0, 0, this.width, this.height);
    this.onChange(this);
  }

  clear() {
    if (!this.labels) return;
    this.snapshot();
    this.labels.fill(UNLABELED);
    this.vertices = [];
    this.render(0, 0, this.width, this.height);
    this.onChange(this);
  }

  render(x0, y0, w, h) {
    const data = this.view.data;
    for (let y = y0; y < y0 + h; y++) {
      for (let x = x0; x < x0 + w; x++) {
        const i = y * this.width + x, c = this.colors[this.labels[i]];
        const o = i * 4;
        if (c) {
          data[o] = c[0]; data[o + 1] = c[1]; data[o + 2] = c[2]; data[o + 3] = ALPHA;
        } else {
          data[o + 3] = 0;
        }
      }
    }
    this.labelCanvas.getContext("2d").putImageData(this.view, 0, 0, x0, y0, w, h);
  }

  /** Pixels painted per class (index -> count). */
  counts() {
    const out = new Map();
    if (!this.labels) return out;
    for (const v of this.labels) if (v !== UNLABELED) out.set(v, (out.get(v) || 0) + 1);
    return out;
  }

  /**
   * The sparse mask as the model's mask file: one band of class values with the model's
   * ignore value for unlabeled pixels, or RGB class colours with its ignore colour.
   * @param {{values: number[]|null, colors: number[][], ignore: number|number[]}} encoding
   */
  async maskPng(encoding) {
    const n = this.labels.length;
    if (encoding.values) {
      const lut = new Uint8Array(256).fill(encoding.ignore);
      encoding.values.forEach((v, i) => (lut[i] = v));
      const px = new Uint8Array(n);
      for (let i = 0; i < n; i++) px[i] = lut[this.labels[i]];
      return encodePng(this.width, this.height, 1, px);
    }
    const px = new Uint8Array(n * 3);
    for (let i = 0; i < n; i++) {
      const c = encoding.colors[this.labels[i]] || encoding.ignore;
      px[3 * i] = c[0]; px[3 * i + 1] = c[1]; px[3 * i + 2] = c[2];
    }
    return encodePng(this.width, this.height, 3, px);
  }
}
