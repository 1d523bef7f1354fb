// Every view the tab offers, in button order. Adding a view: its folder (data.ts, draw.ts, view.ts,
// spec.ts), one line here, and its story (dev/stories/<name>.story.ts).
import {headSpec} from './head/spec';
import {headsSpec} from './heads/spec';
import {imageSpec} from './image/spec';
import {matrixSpec} from './matrix/spec';
import {modelSpec} from './model/spec';
import {neuronSpec} from './neuron/spec';
import {rolloutSpec} from './rollout/spec';
import type {ViewSpec} from './spec';
import {trainingSpec} from './training/spec';

export const VIEW_SPECS: readonly ViewSpec[] = [headSpec, modelSpec, neuronSpec, matrixSpec, trainingSpec, rolloutSpec, imageSpec, headsSpec];

/** The spec named `name`, else the first (the default view). */
export function viewSpec(name: string): ViewSpec {
  return VIEW_SPECS.find((v) => v.name === name) ?? VIEW_SPECS[0];
}
