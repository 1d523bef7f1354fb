// Heads: what every head does across the tag's examples (a probe set) at a step, and over steps: per-head
// metrics aggregated from the records' headers (/headscores, /headtrend, /headexamples); no comparison with
// another run (the selector says so: open the other run's Heads view).
import {parseIntStrict, type UrlState} from '../../state';
import type {HeadExamplesResponse, HeadTrendResponse} from '../../types';
import {defineView} from '../spec';
import {headsData, shownMetric, SORT_KEYS, type SortKey} from './data';
import {HeadsView} from './view';

/** The Heads view's own state: metric (null: induction, else the first), sort, filter, chosen head. */
export interface HeadsState {
  metric: string | null;
  sort: SortKey;
  asc: boolean;
  filter: string;
  /** Grid indices of the chosen head (null: the table's first row). */
  chosen: [number, number] | null;
}

const TOP_EXAMPLES = 10;

function parseHead(v: string | undefined): [number, number] | null {
  const m = v ? /^(\d{1,4})\.(\d{1,4})$/.exec(v) : null;
  return m ? [parseIntStrict(m[1], 0) ?? 0, parseIntStrict(m[2], 0) ?? 0] : null;
}

export const headsUrl: UrlState<HeadsState> = {
  keys: ['hm', 'hs', 'ha', 'hf', 'hh'],
  parse(get) {
    const sort = get('hs');
    const metric = get('hm');
    return {
      metric: metric && /^[\w.-]{1,64}$/.test(metric) ? metric : null,
      sort: sort && (SORT_KEYS as readonly string[]).includes(sort) ? (sort as SortKey) : 'mean',
      asc: get('ha') === '1',
      filter: (get('hf') ?? '').slice(0, 200),
      chosen: parseHead(get('hh')),
    };
  },
  write(s) {
    const out: [string, string][] = [];
    if (s.metric !== null) out.push(['hm', s.metric]);
    if (s.sort !== 'mean') out.push(['hs', s.sort]);
    if (s.asc) out.push(['ha', '1']);
    if (s.filter) out.push(['hf', s.filter]);
    if (s.chosen) out.push(['hh', `${s.chosen[0]}.${s.chosen[1]}`]);
    return out;
  },
  // another run or tag has other heads: the chosen one no longer means anything
  reset(s, changed) {
    return changed.has('run') || changed.has('tag') ? {...s, chosen: null} : s;
  },
};

export const headsSpec = defineView<HeadsState>({
  name: 'heads',
  label: 'Heads',
  controls: [],
  compare: [],
  url: headsUrl,
  exportName: (_, s) => `_heads_${s.metric ?? 'scores'}`,
  unavailable(header, kind) {
    const m = header.metrics?.[kind];
    return m && Object.keys(m).length ? null : 'Heads needs per-head metrics in the records (logged with metrics=True, the default); these records have none for this kind.';
  },
  async show(host, a) {
    const src = host.source;
    if (!src.headScores || !src.headTrend || !src.headExamples) throw new Error('This data source cannot aggregate head scores over examples.');
    const s = host.state;
    const tag = {run: a.ref.run, tag: a.ref.tag};
    const [scores, trend] = await Promise.all([src.headScores(tag, a.ref.step, a.kind), src.headTrend(tag, a.kind).catch((): HeadTrendResponse | null => null)]);
    const input = {scores, trend, examples: null as HeadExamplesResponse | null, metric: s.metric, sort: s.sort, asc: s.asc, filter: s.filter, chosen: s.chosen};
    const first = headsData(input);
    if (first.chosen) {
      const metric = shownMetric(Object.keys(scores.metrics), s.metric);
      input.examples = await src.headExamples(tag, a.ref.step, a.kind, metric, first.chosen[0], first.chosen[1], TOP_EXAMPLES).catch(() => null);
    }
    if (!host.current()) return;
    const data = headsData(input);
    const [view] = host.panes('heads', () => [
      new HeadsView({
        theme: host.theme,
        onMetric: (m) => host.update({}, {metric: m}),
        onSort: (key, asc) => host.update({}, {sort: key, asc}),
        onFilter: (text) => host.update({}, {filter: text.trim().slice(0, 200)}),
        onChoose: (layer, head) => host.update({}, {chosen: [layer, head]}),
        // the head view of that example at the shown step, that layer and that head alone
        onOpenExample: (example, layer, head) => host.open('head', {example, layer, heads: [head], neuronHead: head, step: host.sel.step}, {q: null, detail: null}),
      }),
    ]);
    view.setData(data);
  },
});
