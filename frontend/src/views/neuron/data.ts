// Neuron view data: one head's stored attention and q/k over the model's own tokens (never merged), the
// layer's scoring rules with the defaults filled in, and what to say when q/k were not logged.
import type {Axes} from '../../axes';
import {nearestStep, resolveLayerInfo} from '../../math';
import type {KindInfo, QK, ResolvedLayerInfo} from '../../types';

export interface NeuronData {
  layer: number;
  head: number;
  nHeads: number;
  /** Shown rows (queries) and columns (keys): labels and their indices in the full sequences. */
  queryLabels: string[];
  keyLabels: string[];
  rowIdx: Int32Array;
  colIdx: Int32Array;
  /** Stored attention of this head over the full sequences: (q × k). */
  attention: Float32Array;
  q: number;
  k: number;
  qk: QK | null;
  info: ResolvedLayerInfo;
  selfAttention: boolean;
  /** Set when q/k are not available at this step. */
  missing?: {message: string; nearestStep: number | null};
  /** Extra notes (e.g. that word merging does not apply here). */
  notes?: string[];
}

export interface NeuronInput {
  layer: number;
  head: number;
  info: KindInfo;
  /** Axes built without word merging (the neuron view shows the model's tokens). */
  axes: Axes;
  attention: Float32Array;
  q: number;
  k: number;
  qk: QK | null;
  decoderSelf: boolean;
  /** Where the record is (for the message when q/k are missing) and the steps that have q/k. */
  run: string;
  step: number;
  qkSteps: readonly number[];
  /** The selection asked for merged words (they do not apply here: say so). */
  merge: boolean;
}

export function neuronData(x: NeuronInput): NeuronData {
  let missing: NeuronData['missing'];
  if (!x.qk) {
    missing = {
      message: x.qkSteps.length
        ? `Queries and keys were not logged at step ${x.step} of ${x.run}.`
        : `Queries and keys were not logged for this example of ${x.run}: only the attention lines can be shown.`,
      nearestStep: nearestStep(x.qkSteps, x.step),
    };
  }
  const notes: string[] = [];
  if (x.merge) notes.push('Word merging does not apply to the neuron view: it shows the model’s own tokens.');
  return {
    layer: x.layer,
    head: x.head,
    nHeads: x.info.heads,
    queryLabels: x.axes.rows.labels,
    keyLabels: x.axes.cols.labels,
    rowIdx: x.axes.rows.idx,
    colIdx: x.axes.cols.idx,
    attention: x.attention,
    q: x.q,
    k: x.k,
    qk: x.qk,
    info: resolveLayerInfo(x.info.layer_info?.[x.layer], x.qk?.d ?? x.info.head_dim ?? 64, x.decoderSelf),
    selfAttention: x.axes.self,
    missing,
    notes,
  };
}
