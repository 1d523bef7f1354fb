// A matrix of equal cells on a canvas (layers × heads, tokens × tokens): where cell (r, c) is, which cell a
// pointer is over, the heatmap image of its values (NaN cells grey and hatched), outlines and index labels.
import type {Ctx} from './ctx';
import {drawRaster, hatchCells, nanCells, paintCells, raster, type Bucketer, type Raster} from './heatmap';

export interface CellGrid {
  /** Top-left corner of cell (0, 0), cell width and height, size in cells. */
  x: number;
  y: number;
  cw: number;
  ch: number;
  rows: number;
  cols: number;
}

export function gridWidth(g: CellGrid): number {
  return g.cols * g.cw;
}

export function gridHeight(g: CellGrid): number {
  return g.rows * g.ch;
}

/** The cell under (px, py), or null outside the grid. */
export function cellAt(g: CellGrid, px: number, py: number): {row: number; col: number} | null {
  const col = Math.floor((px - g.x) / g.cw);
  const row = Math.floor((py - g.y) / g.ch);
  if (!(row >= 0 && col >= 0 && row < g.rows && col < g.cols)) return null;
  return {row, col};
}

export function outlineCell(ctx: Ctx, g: CellGrid, row: number, col: number, color: string, width = 2): void {
  ctx.strokeStyle = color;
  ctx.lineWidth = width;
  ctx.strokeRect(g.x + col * g.cw + width / 2, g.y + row * g.ch + width / 2, Math.max(1, g.cw - width), Math.max(1, g.ch - width));
}

/** Outline of a whole row (the hovered query of a token matrix). */
export function outlineRow(ctx: Ctx, g: CellGrid, row: number, color: string, width = 1.5): void {
  ctx.strokeStyle = color;
  ctx.lineWidth = width;
  ctx.strokeRect(g.x - width / 2, g.y + row * g.ch - width / 2, g.cols * g.cw + width, g.ch + width);
}

/** Image of a row-major matrix through a ramp (one pixel per cell; NaN transparent), for drawGridImage. */
export function gridImage(values: ArrayLike<number>, rows: number, cols: number, ramp: Uint8ClampedArray, bucket: Bucketer): Raster {
  return raster(paintCells(values, rows, cols, ramp, bucket), cols, rows);
}

/**
 * Paints `image` (one pixel per cell) over the grid, then the NaN cells of `values` grey and hatched.
 * Returns the number of cells drawn. Cells smaller than a pixel are drawn smoothed (downsampled).
 */
export function drawGridImage(ctx: Ctx, g: CellGrid, image: Raster, values: ArrayLike<number> | null, nan: {fill: string; hatch: string}): number {
  drawRaster(ctx, image, g.x, g.y, gridWidth(g), gridHeight(g), !(g.cw >= 1 && g.ch >= 1));
  if (values) hatchCells(ctx, nanCells(values), g.cols, g.x, g.y, g.cw, g.ch, nan.fill, nan.hatch);
  return g.rows * g.cols;
}

/** Index labels left of the rows and above the columns (every k-th one when cells are small). */
export function drawIndexLabels(
  ctx: Ctx,
  g: CellGrid,
  o: {rowLabel: (i: number) => string; colLabel: (j: number) => string; color: string; font?: string; rowTitle?: string; colTitle?: string},
): void {
  ctx.fillStyle = o.color;
  ctx.font = o.font ?? '11px Roboto, Arial, sans-serif';
  ctx.textBaseline = 'middle';
  const rs = g.ch >= 12 ? 1 : Math.ceil(12 / g.ch);
  const cs = g.cw >= 18 ? 1 : Math.ceil(18 / g.cw);
  ctx.textAlign = 'right';
  for (let i = 0; i < g.rows; i += rs) ctx.fillText(o.rowLabel(i), g.x - 6, g.y + (i + 0.5) * g.ch);
  ctx.textAlign = 'center';
  for (let j = 0; j < g.cols; j += cs) ctx.fillText(o.colLabel(j), g.x + (j + 0.5) * g.cw, g.y - 8);
  ctx.font = 'bold 12px Roboto, Arial, sans-serif';
  if (o.colTitle) {
    // centred over the grid, or from its left edge when wider than the grid
    const wide = ctx.measureText(o.colTitle).width > gridWidth(g);
    ctx.textAlign = wide ? 'left' : 'center';
    ctx.fillText(o.colTitle, wide ? g.x : g.x + gridWidth(g) / 2, g.y - 24);
  }
  if (o.rowTitle) {
    ctx.textAlign = 'right';
    ctx.fillText(o.rowTitle, g.x - 6, g.y - 24);
  }
}
