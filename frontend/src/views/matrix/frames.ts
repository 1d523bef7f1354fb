// The matrix views' frames (one scheduler for the single-head view and the small multiples): at most one
// draw per animation frame; during a gesture (zoom, pan) the cheap scaled frame, and a crisp render once the
// gesture has rested SETTLE_MS (or at once when something asks for `full`: new data, tiles, a jump).

/** Zoom / pan frames draw the last crisp render scaled (one drawImage); this long after the last, a crisp render. */
export const SETTLE_MS = 150;

export interface FrameDrawer {
  /** The gesture's frame from cached renders; false when there is none to scale (then `crisp` runs). */
  scaled(): boolean;
  /** The full render. */
  crisp(): void;
}

export class FrameScheduler {
  private frame = 0;
  private full = false;
  private settle: ReturnType<typeof setTimeout> | null = null;

  constructor(private readonly draw: FrameDrawer) {}

  /** Next frame: crisp (`full`), or scaled during a gesture and crisp once it has rested SETTLE_MS. */
  schedule(full = true): void {
    this.full ||= full;
    if (!full) {
      if (this.settle) clearTimeout(this.settle);
      this.settle = setTimeout(() => {
        this.settle = null;
        this.schedule(true);
      }, SETTLE_MS);
    }
    if (this.frame || typeof requestAnimationFrame === 'undefined') return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      const crisp = this.full;
      this.full = false;
      if (crisp || !this.draw.scaled()) this.draw.crisp();
    });
  }

  /** Cancels what is pending (the view is going). */
  dispose(): void {
    if (this.frame && typeof cancelAnimationFrame !== 'undefined') cancelAnimationFrame(this.frame);
    this.frame = 0;
    if (this.settle) clearTimeout(this.settle);
    this.settle = null;
  }
}
