// Colours: the head palette, the layer palette, diverging (B − A) and value ramps, and the light/dark theme.

export type RGB = [number, number, number];

/** The classic 10-colour categorical palette (as BertViz uses for heads and layers). */
export const CATEGORY10 = [
  '#1f77b4',
  '#ff7f0e',
  '#2ca02c',
  '#d62728',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#7f7f7f',
  '#bcbd22',
  '#17becf',
];

export function hexToRgb(hex: string): RGB {
  const h = hex.replace('#', '');
  const v = h.length === 3 ? h.split('').map((c) => c + c).join('') : h;
  return [parseInt(v.slice(0, 2), 16), parseInt(v.slice(2, 4), 16), parseInt(v.slice(4, 6), 16)];
}

export function rgbToHex([r, g, b]: RGB): string {
  const x = (n: number) => Math.max(0, Math.min(255, Math.round(n))).toString(16).padStart(2, '0');
  return `#${x(r)}${x(g)}${x(b)}`;
}

export function hslToRgb(h: number, s: number, l: number): RGB {
  h = ((h % 360) + 360) % 360;
  const c = (1 - Math.abs(2 * l - 1)) * s;
  const x = c * (1 - Math.abs(((h / 60) % 2) - 1));
  const m = l - c / 2;
  const [r, g, b] =
    h < 60 ? [c, x, 0] : h < 120 ? [x, c, 0] : h < 180 ? [0, c, x] : h < 240 ? [0, x, c] : h < 300 ? [x, 0, c] : [c, 0, x];
  return [(r + m) * 255, (g + m) * 255, (b + m) * 255];
}

const LIGHTNESS = [0.45, 0.3, 0.62, 0.75];

/**
 * Colour of head `i` of `n`. Up to 10 heads: the categorical palette. More: heads are dealt round-robin to
 * 2-4 lightness levels (2 up to 20 heads, 3 up to 40, else 4) and spread evenly over the hue circle within
 * a level, each level's hues offset from the others', so neighbouring heads differ in both hue and
 * lightness (minimum RGB distance: 54 at 20 heads, 26 at 64; tested).
 */
export function headColor(i: number, n: number): string {
  if (n <= CATEGORY10.length) return CATEGORY10[i % CATEGORY10.length];
  const levels = n <= 20 ? 2 : n <= 40 ? 3 : 4;
  const perLevel = Math.ceil(n / levels);
  const level = i % levels;
  const k = Math.floor(i / levels);
  const hue = 210 + (k * 360) / perLevel + (level * 360) / perLevel / levels;
  return rgbToHex(hslToRgb(hue, 0.78, LIGHTNESS[level]));
}

export function headPalette(n: number): string[] {
  return Array.from({length: n}, (_, i) => headColor(i, n));
}

/**
 * Colour of layer `layer` of `nLayers`: the categorical palette up to 10 layers (as BertViz), past that the
 * head scheme (hue × lightness), so that 11 to 80+ layers never repeat a colour.
 */
export function layerColor(layer: number, nLayers: number): string {
  return headColor(layer, Math.max(nLayers, layer + 1));
}

/** Lighter, less saturated version of a colour (a switched-off head swatch). */
export function lighten(hex: string, amount = 0.6): string {
  const [r, g, b] = hexToRgb(hex);
  return rgbToHex([r + (255 - r) * amount, g + (255 - g) * amount, b + (255 - b) * amount]);
}

/** Diverging colours for B − A: positive (B larger) blue, negative (A larger) red. */
export const DIVERGING = {pos: '#2166ac', neg: '#d6604d'};

/**
 * A 256-entry RGBA lookup (Uint8ClampedArray of 1024) mapping bucket b = round(255·t), t in [0, 1], to
 * `rgb` at alpha t^gamma: colour over whatever background the canvas shows.
 */
export function alphaRamp(rgb: RGB, gamma = 1): Uint8ClampedArray {
  const out = new Uint8ClampedArray(1024);
  for (let b = 0; b < 256; b++) {
    out[4 * b] = rgb[0];
    out[4 * b + 1] = rgb[1];
    out[4 * b + 2] = rgb[2];
    out[4 * b + 3] = Math.round(255 * Math.pow(b / 255, gamma));
  }
  return out;
}

export interface Theme {
  dark: boolean;
  bg: string;
  text: string;
  muted: string;
  highlight: string;
  border: string;
  /** Neuron view: positive and negative values, attention lines. */
  pos: string;
  neg: string;
  attn: string;
}

export const LIGHT: Theme = {
  dark: false,
  bg: '#ffffff',
  text: '#202020',
  muted: '#757575',
  highlight: '#e5e5e5',
  border: '#dddddd',
  pos: '#0c36d8',
  neg: '#ff6318',
  attn: '#1f4fe0',
};

export const DARK: Theme = {
  dark: true,
  bg: '#202124',
  text: '#dddddd',
  muted: '#9aa0a6',
  highlight: '#3c4043',
  border: '#4a4a4a',
  pos: '#2090dd',
  neg: '#ff6318',
  attn: '#2994de',
};

/** Viridis (perceptually uniform, colour-blind safe) at 9 stops, for sequential scales (low → high). */
export const VIRIDIS: RGB[] = [
  [68, 1, 84],
  [71, 44, 122],
  [59, 81, 139],
  [44, 113, 142],
  [33, 144, 141],
  [39, 173, 129],
  [92, 200, 99],
  [170, 220, 50],
  [253, 231, 37],
];

/** Grey that stands for "undefined" (NaN) cells, with a hatch drawn over it. */
export function nanColors(t: Theme): {fill: string; hatch: string} {
  return t.dark ? {fill: '#3a3b3e', hatch: '#6b6e73'} : {fill: '#ececec', hatch: '#b5b5b5'};
}

/** A 256-entry opaque RGBA lookup interpolating `stops` linearly: bucket 0 = first stop, 255 = last. */
export function sequentialRamp(stops: readonly RGB[] = VIRIDIS): Uint8ClampedArray {
  const out = new Uint8ClampedArray(1024);
  const n = stops.length - 1;
  for (let b = 0; b < 256; b++) {
    const t = (b / 255) * n;
    const i = Math.min(n - 1, Math.floor(t));
    const f = t - i;
    for (let c = 0; c < 3; c++) out[4 * b + c] = Math.round(stops[i][c] + (stops[i + 1][c] - stops[i][c]) * f);
    out[4 * b + 3] = 255;
  }
  return out;
}

/** CSS colour of bucket `b` of a ramp. */
export function rampColor(ramp: Uint8ClampedArray, b: number): string {
  const i = 4 * Math.max(0, Math.min(255, Math.round(b)));
  return ramp[i + 3] === 255 ? rgbToHex([ramp[i], ramp[i + 1], ramp[i + 2]]) : `rgba(${ramp[i]},${ramp[i + 1]},${ramp[i + 2]},${(ramp[i + 3] / 255).toFixed(3)})`;
}
