// What a file is and its size in pixels, read from its first bytes, before any upload:
// the page names every file the service would refuse (not an image, too many pixels) at
// once, next to the file. Kinds are sniffed like the service does (api/uploads.py), so a
// mask renamed to .jpg or a text file renamed to .png is called what it is.
//   PNG: signature + IHDR (PNG specification, W3C 2003, 11.2.2)
//   JPEG: the first SOFn marker's frame header (ITU T.81, B.2.2)
//   TIFF / BigTIFF: tags 256 ImageWidth and 257 ImageLength of the first IFD (TIFF 6.0, 8)

const HEAD = 256 * 1024; // JPEG frame headers follow EXIF blocks of up to 64 KiB

/** The kind of a file from its magic bytes: "png", "jpeg", "tiff", "zip" or null. */
export function sniff(bytes) {
  const b = bytes;
  if (b.length >= 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) return "png";
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return "jpeg";
  if (b.length >= 4 && ((b[0] === 0x49 && b[1] === 0x49) || (b[0] === 0x4d && b[1] === 0x4d))) {
    const v = b[0] === 0x49 ? b[2] | (b[3] << 8) : (b[2] << 8) | b[3];
    if (v === 42 || v === 43) return "tiff";
  }
  if (b.length >= 4 && b[0] === 0x50 && b[1] === 0x4b && (b[2] === 3 || b[2] === 5)) return "zip";
  return null;
}

const PNG_CHANNELS = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }; // by colour type (3: palette)

function pngSize(view) {
  if (view.byteLength < 26) return null;
  return { width: view.getUint32(16), height: view.getUint32(20), channels: PNG_CHANNELS[view.getUint8(25)] ?? null };
}

function jpegSize(view) {
  let i = 2;
  while (i + 9 < view.byteLength) {
    if (view.getUint8(i) !== 0xff) return null;
    const marker = view.getUint8(i + 1);
    if (marker === 0xff) { i += 1; continue; } // fill byte
    const length = view.getUint16(i + 2);
    const sof = marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker);
    if (sof) return { height: view.getUint16(i + 5), width: view.getUint16(i + 7), channels: view.getUint8(i + 9) };
    i += 2 + length;
  }
  return null;
}

function tiffSize(view) {
  const le = view.getUint8(0) === 0x49;
  const big = view.getUint16(2, le) === 43;
  const u64 = (o) => Number(view.getBigUint64(o, le));
  const ifd = big ? u64(8) : view.getUint32(4, le);
  const entry = big ? 20 : 12;
  if (ifd + (big ? 8 : 2) > view.byteLength) return null;
  const count = big ? u64(ifd) : view.getUint16(ifd, le);
  const out = {};
  for (let k = 0; k < count; k++) {
    const o = ifd + (big ? 8 : 2) + k * entry;
    if (o + entry > view.byteLength) break;
    const tag = view.getUint16(o, le);
    if (tag !== 256 && tag !== 257 && tag !== 277) continue;
    const type = view.getUint16(o + 2, le);
    const at = o + (big ? 12 : 8);
    const value = type === 3 ? view.getUint16(at, le) : type === 16 ? u64(at) : view.getUint32(at, le);
    out[{ 256: "width", 257: "height", 277: "channels" }[tag]] = value;
  }
  return out.width && out.height ? { channels: 1, ...out } : null;
}

/**
 * Sniff a file and read its pixel size from its header.
 * @param {File} file
 * @returns {Promise<{kind: string|null, width: number|null, height: number|null, channels: number|null}>}
 *   width, height and channels (bands; 1 for a palette PNG) are null for zips, non-images
 *   and headers that could not be read.
 */
export async function inspect(file) {
  const buffer = await file.slice(0, HEAD).arrayBuffer();
  const bytes = new Uint8Array(buffer);
  const kind = sniff(bytes);
  const view = new DataView(buffer);
  let size = null;
  try {
    if (kind === "png") size = pngSize(view);
    else if (kind === "jpeg") size = jpegSize(view);
    else if (kind === "tiff") size = tiffSize(view);
  } catch (_) { /* a truncated header: the service says what is wrong with the file */ }
  return { kind, width: size?.width ?? null, height: size?.height ?? null, channels: size?.channels ?? null };
}
