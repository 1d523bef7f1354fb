// The shell's weighting toggle (URL `weighting=value`): raw attention weights, or value-weighted attention
// (Kobayashi et al. 2020, "Attention is not only a weight": α_ij·‖f(x_j)‖, renormalised per query row). What
// decides whether a record can be shown value-weighted, and what a long layer keeps raw. Pure.
import type {CompareMode} from './state';
import type {DataSource, Header, Kind, KindInfo, Weighting} from './types';

export const WEIGHTING_LABELS: Readonly<Record<Weighting, string>> = {weights: 'weights', value: 'value-weighted'};

/** What the toggle's tooltip says when it can be used. */
export const WEIGHTING_HELP = 'Raw attention weights α, or value-weighted attention (Kobayashi et al. 2020): α_ij·‖f(x_j)‖, renormalised per query row';

export const NO_BACKEND = 'This page (notebook / standalone) has no backend to value-weight attention: it shows the weights embedded in it.';
export const NO_VALUE_NORMS = 'This record has no value norms: capture with values=True (format v5) to see value-weighted attention.';

/**
 * Why `kind` of a record with `header` cannot be shown value-weighted from `source` (the toggle's disabled
 * reason), or null when it can. No record selected: null.
 */
export function valueWeightingProblem(source: DataSource, header: Header | undefined, kind: Kind | null): string | null {
  if (!source.weightings?.includes('value')) return NO_BACKEND;
  const info = header && kind ? header.kinds[kind] : undefined;
  if (!info) return null;
  return info.has_value_norms === true ? null : NO_VALUE_NORMS;
}

/** True when the record's kind stores value norms (what the backend's `weighting=value` needs). */
export function hasValueNorms(header: Header, kind: Kind): boolean {
  return header.kinds[kind]?.has_value_norms === true;
}

/**
 * The weighting to ask a layer's pooled data for (`/overview`; `/pyramid` and `/topk` take none): a long
 * layer's are raw weights only (value-weighted only in its exact windows), so 'weights' there.
 */
export function pooledWeighting(info: Pick<KindInfo, 'layout'>, w: Weighting): Weighting {
  return info.layout === 'long' ? 'weights' : w;
}

/**
 * The weighting a view fetches `kind` of a record with `header` with: the toggle's (`asked`) when the view
 * uses the toggle and the record can be value-weighted from `source`, else raw weights.
 */
export function effectiveWeighting(asked: Weighting, usesToggle: boolean, source: DataSource, header: Header | undefined, kind: Kind | null): Weighting {
  return asked === 'value' && usesToggle && header && kind && !valueWeightingProblem(source, header, kind) ? 'value' : 'weights';
}

/**
 * What becomes of compared record B when A is shown with weighting `w`: null (drawn, the same weighting), or,
 * B lacking value norms while A is value-weighted, a message in B's place (side by side) or instead of the
 * view (B − A, `error`). A comparison never mixes weightings.
 */
export function compareOutcome(w: Weighting, b: {header: Header; kind: Kind; ref: {run: string; step: number}}, mode: CompareMode): {text: string; error: boolean} | null {
  if (w !== 'value' || hasValueNorms(b.header, b.kind)) return null;
  const why = `B (${b.ref.run} @ ${b.ref.step}) has no value norms (captured before format v5, or without values=True), so it is not drawn value-weighted next to A; switch Weighting to “weights” to compare the raw weights.`;
  return mode === 'diff' ? {text: `B − A is not drawn: ${why}`, error: true} : {text: why, error: false};
}
