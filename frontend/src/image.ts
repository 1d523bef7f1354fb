// A record's image and its patch layout (header.image, format v4): checking it against the record, which
// token is which patch, and which display pixels each patch covers. Pure: no DOM, no HTTP.
import {IMAGE_MIMES, type Header, type ImageInfo} from './types';

/** Either side of an image past this many pixels is refused (a decompression bomb, or a broken header). */
export const MAX_IMAGE_SIDE = 16384;
/** Patches past this many are refused (a grid of 1 px patches on the largest image would be 2^28). */
export const MAX_PATCHES = 1 << 21;

const posInt = (v: unknown, max: number): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 1 && v <= max;

/**
 * Why a header's `image` cannot be drawn (malformed, or its grid does not fit the token count), or null
 * when it is fine or absent (`imageOf` tells which).
 */
export function imageProblem(header: Header): string | null {
  const im = header.image as Partial<ImageInfo> | undefined;
  if (im === undefined || im === null) return null;
  if (typeof im !== 'object') return 'its image entry is malformed.';
  if (!(IMAGE_MIMES as readonly unknown[]).includes(im.mime)) return `its image has an unsupported type ${JSON.stringify(String(im.mime)).slice(0, 40)} (PNG or WebP).`;
  if (!posInt(im.width, MAX_IMAGE_SIDE) || !posInt(im.height, MAX_IMAGE_SIDE)) return `its image claims ${String(im.width)} × ${String(im.height)} pixels (each side 1 to ${MAX_IMAGE_SIDE}).`;
  const g = im.grid;
  if (!Array.isArray(g) || g.length !== 2 || !posInt(g[0], MAX_PATCHES) || !posInt(g[1], MAX_PATCHES) || g[0] * g[1] > MAX_PATCHES) return `its image has a malformed patch grid ${JSON.stringify(g)?.slice(0, 40)}.`;
  if (g[0] > im.height || g[1] > im.width) return `its patch grid ${g[0]} × ${g[1]} is finer than the ${im.width} × ${im.height} px image.`;
  if (typeof im.sequence !== 'string' || !Array.isArray(header.sequences?.[im.sequence])) return `its image names no token sequence of the record (${JSON.stringify(String(im.sequence)).slice(0, 40)}).`;
  const n = header.sequences[im.sequence].length;
  if (typeof im.patch_start !== 'number' || !Number.isSafeInteger(im.patch_start) || im.patch_start < 0) return 'its image has a malformed patch_start.';
  if (im.patch_start + g[0] * g[1] > n)
    return `its patch grid ${g[0]} × ${g[1]} (${g[0] * g[1]} patches from token ${im.patch_start}) does not fit the ${n} tokens of sequence “${im.sequence}”.`;
  if (typeof im.bytes !== 'number' || !Number.isSafeInteger(im.bytes) || im.bytes < 0) return 'its image has a malformed byte count.';
  return null;
}

/** The header's image when it has a valid one, else null. */
export function imageOf(header: Header): ImageInfo | null {
  return header.image && imageProblem(header) === null ? header.image : null;
}

/** Patches in the grid. */
export function patchCount(im: ImageInfo): number {
  return im.grid[0] * im.grid[1];
}

/** The patch (row, col) that token `pos` of sequence `seq` is, or null for a non-patch token. */
export function patchOf(im: ImageInfo, seq: string, pos: number): [number, number] | null {
  if (seq !== im.sequence) return null;
  const i = pos - im.patch_start;
  if (!Number.isInteger(i) || i < 0 || i >= patchCount(im)) return null;
  return [Math.floor(i / im.grid[1]), i % im.grid[1]];
}

/** The token position of patch (r, c) in the image's sequence. */
export function patchToken(im: ImageInfo, r: number, c: number): number {
  return im.patch_start + r * im.grid[1] + c;
}

/** How large the image is drawn: fits `maxW` × `maxH`, enlarged by a whole factor (pixels stay square). */
export function displaySize(im: ImageInfo, maxW: number, maxH: number): {width: number; height: number; scale: number} {
  let s = Math.min(maxW / im.width, maxH / im.height);
  if (s >= 1) s = Math.floor(s);
  return {width: Math.max(1, Math.round(im.width * s)), height: Math.max(1, Math.round(im.height * s)), scale: s};
}

/** Whole display pixels [x0, x1) of patch column c (or row: pass rows and the height). */
export function patchSpan(c: number, cols: number, size: number): [number, number] {
  return [Math.round((c * size) / cols), Math.round(((c + 1) * size) / cols)];
}

/**
 * Each patch's rectangle on an image drawn `width` × `height` px, row-major: [x0, y0, x1, y1] in whole
 * pixels, tiling the image without gaps or overlap (patch (r, c) covers the pixels of image columns
 * [c·W/cols, (c+1)·W/cols) scaled, rounded to whole pixels).
 */
export function patchRects(im: ImageInfo, width: number, height: number): Int32Array {
  const [rows, cols] = im.grid;
  const out = new Int32Array(rows * cols * 4);
  for (let r = 0; r < rows; r++) {
    const [y0, y1] = patchSpan(r, rows, height);
    for (let c = 0; c < cols; c++) {
      const [x0, x1] = patchSpan(c, cols, width);
      out.set([x0, y0, x1, y1], (r * cols + c) * 4);
    }
  }
  return out;
}

/** The patch under display pixel (x, y) of an image drawn `width` × `height` px, or null outside it. */
export function patchAtPixel(im: ImageInfo, width: number, height: number, x: number, y: number): [number, number] | null {
  if (!(x >= 0 && y >= 0 && x < width && y < height)) return null;
  const [rows, cols] = im.grid;
  // the span test, not a division, so that a pixel belongs to the patch whose rectangle holds it
  let c = Math.min(cols - 1, Math.floor((x * cols) / width));
  while (c > 0 && patchSpan(c, cols, width)[0] > x) c--;
  while (c < cols - 1 && patchSpan(c, cols, width)[1] <= x) c++;
  let r = Math.min(rows - 1, Math.floor((y * rows) / height));
  while (r > 0 && patchSpan(r, rows, height)[0] > y) r--;
  while (r < rows - 1 && patchSpan(r, rows, height)[1] <= y) r++;
  return [r, c];
}
