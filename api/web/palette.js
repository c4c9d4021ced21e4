// Class colours on screen. A dataset's own colours can be hard to tell apart over imagery
// (Dubai's building (60,16,152) and land (132,41,246) both read as purple at 60 %
// opacity), so the map offers a display palette beside them: Tableau 10 (Stone, 2016),
// designed to keep its colours distinct. Downloads keep the dataset's colours.
// Distances are CIE76 ΔE in CIELAB (sRGB, D65), where about 2.3 is just noticeable.

export const DISTINCT = [
  [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
  [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207],
];
/** Below this ΔE, two class colours count as too close to tell apart over imagery. */
export const MIN_DELTA_E = 40;

function lab(rgb) {
  const lin = rgb.map((v) => { const c = v / 255; return c > 0.04045 ? ((c + 0.055) / 1.055) ** 2.4 : c / 12.92; });
  const xyz = [
    (0.4124 * lin[0] + 0.3576 * lin[1] + 0.1805 * lin[2]) / 0.95047,
    0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2],
    (0.0193 * lin[0] + 0.1192 * lin[1] + 0.9505 * lin[2]) / 1.08883,
  ];
  const f = (t) => (t > 0.008856 ? Math.cbrt(t) : 7.787 * t + 16 / 116);
  const [x, y, z] = xyz.map(f);
  return [116 * y - 16, 500 * (x - y), 200 * (y - z)];
}

export function deltaE(a, b) {
  const p = lab(a), q = lab(b);
  return Math.hypot(p[0] - q[0], p[1] - q[1], p[2] - q[2]);
}

/** The two closest colours: {i, j, dE} (dE Infinity for fewer than two). */
export function closestPair(colors) {
  let best = { i: -1, j: -1, dE: Infinity };
  for (let i = 0; i < colors.length; i++) {
    for (let j = i + 1; j < colors.length; j++) {
      const dE = deltaE(colors[i], colors[j]);
      if (dE < best.dE) best = { i, j, dE };
    }
  }
  return best;
}

/** Colours of the classes in a palette ("dataset" or "distinct"). */
export function paletteColors(model, mode) {
  if (mode !== "distinct") return model.classes.map((c) => c.color);
  return model.classes.map((_, i) => {
    if (i < DISTINCT.length) return DISTINCT[i];
    const hue = (i * 137.508) % 360; // golden angle beyond ten classes
    return hslToRgb(hue, 0.65, 0.5);
  });
}

function hslToRgb(h, s, l) {
  const k = (n) => (n + h / 30) % 12;
  const a = s * Math.min(l, 1 - l);
  const f = (n) => Math.round(255 * (l - a * Math.max(-1, Math.min(k(n) - 3, 9 - k(n), 1))));
  return [f(0), f(8), f(4)];
}

/** "distinct" when two of the dataset's colours are closer than MIN_DELTA_E, else "dataset". */
export function defaultPalette(model) {
  return closestPair(model.classes.map((c) => c.color)).dE < MIN_DELTA_E ? "distinct" : "dataset";
}

/**
 * Repaint a class-colour PNG: every pixel of colour `from[k]` becomes `to[k]` (alpha kept).
 * @param {Blob} blob the map PNG in the dataset's colours
 * @returns {Promise<Blob>} a PNG in the `to` colours
 */
export async function recolor(blob, from, to) {
  const bitmap = await createImageBitmap(blob);
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  const image = ctx.getImageData(0, 0, bitmap.width, bitmap.height);
  const lut = new Map(from.map((c, k) => [(c[0] << 16) | (c[1] << 8) | c[2], to[k]]));
  const px = image.data;
  for (let i = 0; i < px.length; i += 4) {
    const hit = lut.get((px[i] << 16) | (px[i + 1] << 8) | px[i + 2]);
    if (hit) { px[i] = hit[0]; px[i + 1] = hit[1]; px[i + 2] = hit[2]; }
  }
  ctx.putImageData(image, 0, 0);
  return canvas.convertToBlob({ type: "image/png" });
}
