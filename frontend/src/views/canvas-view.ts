// What every canvas view shares: its CanvasStack (made with the view, redrawn when a virtualised band or the
// view layers' band moves, disposed with it) and its export size (the stack's content size). A view adds its
// own teardown (timers, window listeners, a frame scheduler) by overriding `dispose` and calling
// `super.dispose()`.
import {CanvasStack} from '../draw/canvas';
import type {Theme} from '../draw/colors';
import type {Ctx} from '../draw/ctx';
import type {ViewBase} from './common';

export abstract class CanvasView implements ViewBase {
  abstract readonly el: HTMLElement;
  /** The view's stacked canvases (layer 0 at the bottom); `data-testid` = `testid` when given. */
  protected readonly stack: CanvasStack;

  /**
   * `viewLayers`: layers sized to the visible part of the content (see CanvasStack), redrawn by `redrawView`;
   * `bitmapLayers`: layers the view always draws whole, shown as bitmaps (see CanvasStack).
   */
  constructor(layers: number, testid?: string, viewLayers: readonly number[] = [], bitmapLayers: readonly number[] = []) {
    this.stack = new CanvasStack(layers, () => this.redraw(), {viewLayers, bitmapLayers, onViewBandChange: () => this.redrawView()});
    if (testid) this.stack.root.setAttribute('data-testid', testid);
  }

  /** Draws every layer anew (new data, a theme, the virtualised band moved). */
  protected abstract redraw(): void;
  /** Draws the view layers anew (scrolling moved them); by default, everything. */
  protected redrawView(): void {
    this.redraw();
  }
  abstract setTheme(t: Theme): void;
  abstract paint(ctx: Ctx): void;

  exportSize(): {width: number; height: number} {
    return {width: this.stack.width, height: this.stack.height};
  }

  dispose(): void {
    this.stack.dispose();
  }
}
