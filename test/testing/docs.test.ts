/**
 * Every example in docs/testing.md is a test file under test/testing/examples/
 * (run by vitest like any other test); this checks the page shows each one
 * verbatim, with the package's import paths instead of the repository's.
 * After editing an example: `UPDATE_DOCS=1 npx vitest run test/testing/docs.test.ts`.
 */
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('../../', import.meta.url));
const EXAMPLE = /<!-- example: (\S+) -->\n\n```ts\n([\s\S]*?)```/g;
let page = readFileSync(`${root}docs/testing.md`, 'utf8');
if (process.env.UPDATE_DOCS) {
  page = page.replace(EXAMPLE, (_all, path: string) => `<!-- example: ${path} -->\n\n\`\`\`ts\n${asPublished(readFileSync(`${root}${path}`, 'utf8'))}\`\`\``);
  writeFileSync(`${root}docs/testing.md`, page);
}

/** Repository imports → what a user of the package writes. */
function asPublished(code: string): string {
  return code.replaceAll("'../../../testing/index.js'", "'taquba-workflow/testing'").replaceAll("'../../../core/index.js'", "'taquba-workflow'");
}

const included = [...page.matchAll(EXAMPLE)].map((m) => ({ path: m[1] as string, code: m[2] as string }));

describe('docs/testing.md', () => {
  it('includes every example file', () => {
    const files = readdirSync(`${root}test/testing/examples`).filter((f) => f.endsWith('.test.ts'));
    expect(files.length).toBeGreaterThanOrEqual(3);
    expect(included.map((e) => e.path).sort()).toEqual(files.map((f) => `test/testing/examples/${f}`).sort());
  });

  it.each(included.map((e) => [e.path, e] as const))('shows %s verbatim', (path, example) => {
    expect(example.code).toBe(asPublished(readFileSync(`${root}${path}`, 'utf8')));
  });

  it('has no TypeScript block that is not a checked example', () => {
    expect([...page.matchAll(/```ts\n/g)].length).toBe(included.length);
  });
});
