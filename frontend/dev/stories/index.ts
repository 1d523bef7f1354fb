// Every view's story, found by view name: dev/stories/<name>.story.ts exporting `story` (no list to keep:
// test/views.test.ts fails for a registered view without one). esbuild bundles every matching file for the
// dynamic import below; vitest imports it as it is.
import type {Story} from './story';

/** The story of view `name`, or null when it has none. */
export async function findStory(name: string): Promise<Story<unknown> | null> {
  if (!/^[a-z][a-z0-9_]*$/.test(name)) return null;
  try {
    const m = (await import(`./${name}.story.ts`)) as {story?: Story<unknown>};
    return m.story ?? null;
  } catch {
    return null;
  }
}

/** The story of view `name` (throws when it has none). */
export async function loadStory(name: string): Promise<Story<unknown>> {
  const s = await findStory(name);
  if (!s) throw new Error(`view ${name} has no story (dev/stories/${name}.story.ts exporting \`story\`)`);
  return s;
}
