// The module graph of src/: no import circle (type-only imports count: they tie modules as tightly for a
// reader), shipped code never reaches into dev/ or test/, and no module imports another's private
// (underscore-prefixed) names.
import {describe, expect, it} from 'vitest';

declare global {
  interface ImportMeta {
    /** Vite's: the files matching a pattern, here their text (`?raw`). */
    glob(pattern: string, options: {query: '?raw'; import: 'default'; eager: true}): Record<string, string>;
  }
}

const IMPORT = /(?:^|\n)\s*(?:import|export)\s+(?:type\s+)?([^'";]*?)\s*from\s*['"]([^'"]+)['"]/g;
/** Every module of src/, by path relative to the frontend ("src/app.ts"), and its text. */
const SOURCES: Record<string, string> = Object.fromEntries(
  Object.entries(import.meta.glob('../src/**/*.ts', {query: '?raw', import: 'default', eager: true})).map(([p, text]) => [p.replace(/^\.\.\//, ''), text]),
);

/** `rel` (./x, ../y) resolved against the folder of module `from`, as "src/…/x.ts". */
function resolveImport(from: string, rel: string): string {
  const parts = from.split('/').slice(0, -1);
  for (const p of rel.split('/')) {
    if (p === '..') parts.pop();
    else if (p !== '.') parts.push(p);
  }
  return parts.join('/') + '.ts';
}

/** Each module of src/ → the modules it imports and the names it imports from each. */
function graph(): Map<string, {to: string; names: string}[]> {
  const g = new Map<string, {to: string; names: string}[]>();
  for (const [f, text] of Object.entries(SOURCES)) {
    const edges: {to: string; names: string}[] = [];
    for (const m of text.matchAll(IMPORT)) if (m[2].startsWith('.')) edges.push({to: resolveImport(f, m[2]), names: m[1]});
    g.set(f, edges);
  }
  return g;
}

/** A cycle of the graph as a path [a, b, …, a], or null. */
export function findCycle(g: Map<string, {to: string}[]>): string[] | null {
  const state = new Map<string, 1 | 2>(); // 1: on the stack, 2: done
  const stack: string[] = [];
  const visit = (n: string): string[] | null => {
    state.set(n, 1);
    stack.push(n);
    for (const {to} of g.get(n) ?? []) {
      if (state.get(to) === 1) return [...stack.slice(stack.indexOf(to)), to];
      if (!state.has(to)) {
        const c = visit(to);
        if (c) return c;
      }
    }
    stack.pop();
    state.set(n, 2);
    return null;
  };
  for (const n of [...g.keys()].sort()) if (!state.has(n)) {
    const c = visit(n);
    if (c) return c;
  }
  return null;
}

describe('module graph of src/', () => {
  const g = graph();
  it('finds the modules and their imports', () => {
    expect(g.size).toBeGreaterThan(30);
    expect(g.get('src/app.ts')!.map((e) => e.to)).toContain('src/state.ts');
    expect(findCycle(new Map([['a', [{to: 'b'}]], ['b', [{to: 'c'}]], ['c', [{to: 'a'}]]]))).toEqual(['a', 'b', 'c', 'a']);
  });
  it('has no import circle', () => {
    expect(findCycle(g)).toBeNull();
  });
  it('imports only from src/, and only public names', () => {
    for (const [f, edges] of g) {
      for (const {to, names} of edges) {
        expect(to.startsWith('src/'), `${f} imports ${to}`).toBe(true);
        expect(g.has(to), `${f} imports ${to}, which is not a module of src/`).toBe(true);
        expect(/(?:^|[\s{,])_\w/.test(names), `${f} imports private names from ${to}: ${names}`).toBe(false);
      }
    }
  });
});
