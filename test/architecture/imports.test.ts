/**
 * The import graph of the published folders: no cycles (type-only imports
 * included: a cycle through types is still two modules that cannot be read
 * apart), and the layering the package promises:
 *
 * - core imports nothing from adapters, conformance or testing;
 * - an adapter imports core and its own folder only;
 * - testing does not import conformance.
 *
 * Only relative specifiers are followed (packages are not part of the graph);
 * a relative import that resolves to no file fails too.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const FOLDERS = ['core', 'adapters', 'conformance', 'testing'];

/** Repository-relative path with forward slashes. */
const rel = (root: string, file: string): string => relative(root, file).split(sep).join('/');

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sourceFiles(path));
    else if (/\.(m|c)?ts$/.test(entry.name) && !entry.name.endsWith('.d.ts')) out.push(path);
  }
  return out;
}

/** Every module specifier the file names: static imports and re-exports, `import()` calls and `import('…')` types. */
function specifiers(file: string): string[] {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      found.push(node.moduleSpecifier.text);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const [arg] = node.arguments;
      if (arg && ts.isStringLiteralLike(arg)) found.push(arg.text);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      found.push(node.argument.literal.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** The file a relative specifier names (`./x.js` is `./x.ts` in the sources), or undefined. */
function resolveRelative(from: string, specifier: string): string | undefined {
  const base = resolve(dirname(from), specifier);
  const candidates = [
    base
      .replace(/\.js$/, '.ts')
      .replace(/\.mjs$/, '.mts')
      .replace(/\.cjs$/, '.cts'),
    base,
    `${base}.ts`,
    join(base, 'index.ts'),
  ];
  return candidates.find((candidate) => existsSync(candidate));
}

interface ImportGraph {
  /** file → the files it imports (repository-relative). */
  edges: Map<string, string[]>;
  /** Relative imports that name no file. */
  unresolved: string[];
}

function importGraph(root: string = ROOT, folders: string[] = FOLDERS): ImportGraph {
  const edges = new Map<string, string[]>();
  const unresolved: string[] = [];
  for (const folder of folders) {
    const dir = join(root, folder);
    if (!existsSync(dir)) continue;
    for (const file of sourceFiles(dir)) {
      const targets: string[] = [];
      for (const specifier of specifiers(file)) {
        if (!specifier.startsWith('./') && !specifier.startsWith('../')) continue;
        const target = resolveRelative(file, specifier);
        if (target === undefined) unresolved.push(`${rel(root, file)}: ${specifier}`);
        else targets.push(rel(root, target));
      }
      edges.set(rel(root, file), [...new Set(targets)]);
    }
  }
  return { edges, unresolved };
}

/** Each cycle once, as a path that starts and ends at the same file (strongly connected components, Tarjan). */
function findCycles(edges: Map<string, string[]>): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const connect = (node: string): void => {
    index.set(node, counter);
    low.set(node, counter);
    counter++;
    stack.push(node);
    onStack.add(node);
    for (const next of edges.get(node) ?? []) {
      if (!index.has(next)) {
        connect(next);
        low.set(node, Math.min(low.get(node) ?? 0, low.get(next) ?? 0));
      } else if (onStack.has(next)) {
        low.set(node, Math.min(low.get(node) ?? 0, index.get(next) ?? 0));
      }
    }
    if (low.get(node) === index.get(node)) {
      const component: string[] = [];
      for (;;) {
        const member = stack.pop();
        if (member === undefined) break;
        onStack.delete(member);
        component.push(member);
        if (member === node) break;
      }
      if (component.length > 1 || (edges.get(node) ?? []).includes(node)) components.push(component);
    }
  };
  for (const node of [...edges.keys()].sort()) if (!index.has(node)) connect(node);
  // One concrete cycle per component: a shortest path back to its first member (breadth first inside the component).
  return components.map((component) => {
    const members = new Set(component);
    const [start] = [...component].sort();
    if (start === undefined) return [];
    const previous = new Map<string, string>();
    const queue = [start];
    for (let i = 0; i < queue.length; i++) {
      const node = queue[i];
      if (node === undefined) break;
      for (const next of edges.get(node) ?? []) {
        if (!members.has(next)) continue;
        if (next === start) {
          const path = [node];
          for (let at = node; at !== start;) {
            const before = previous.get(at);
            if (before === undefined) break;
            path.unshift(before);
            at = before;
          }
          return [...path, start];
        }
        if (!previous.has(next)) {
          previous.set(next, node);
          queue.push(next);
        }
      }
    }
    return [...component, start];
  });
}

/** Imports that cross the layering, as `from → to (rule)`. */
function layeringViolations(edges: Map<string, string[]>): string[] {
  const top = (file: string): string => file.split('/')[0] ?? '';
  const adapter = (file: string): string | undefined => (top(file) === 'adapters' ? file.split('/')[1] : undefined);
  const out: string[] = [];
  for (const [from, targets] of edges) {
    for (const to of targets) {
      if (top(from) === 'core' && top(to) !== 'core') out.push(`${from} → ${to} (core imports only core)`);
      if (adapter(from) !== undefined && top(to) !== 'core' && adapter(to) !== adapter(from))
        out.push(`${from} → ${to} (an adapter imports only core and its own folder)`);
      if (top(from) === 'testing' && top(to) === 'conformance') out.push(`${from} → ${to} (testing does not import conformance)`);
    }
  }
  return out.sort();
}

describe('import graph of core, adapters, conformance, testing', () => {
  const graph = importGraph();

  it('reads the sources and resolves every relative import', () => {
    expect(graph.edges.size).toBeGreaterThan(50);
    expect(graph.edges.has('core/index.ts')).toBe(true);
    expect(graph.unresolved).toEqual([]);
  });

  it('has no circular imports', () => {
    const cycles = findCycles(graph.edges).map((cycle) => cycle.join(' → '));
    expect(cycles, `circular imports:\n${cycles.join('\n')}`).toEqual([]);
  });

  it('keeps the layering: core alone, adapters on core only, testing without conformance', () => {
    expect(layeringViolations(graph.edges)).toEqual([]);
  });

  it('finds a cycle and a layering breach when there is one (the checker itself)', () => {
    const edges = new Map([
      ['core/a.ts', ['core/b.ts']],
      ['core/b.ts', ['core/c.ts', 'adapters/memory/m.ts']],
      ['core/c.ts', ['core/a.ts']],
      ['adapters/memory/m.ts', ['adapters/sqlite/s.ts', 'core/a.ts']],
      ['adapters/sqlite/s.ts', []],
      ['testing/t.ts', ['conformance/x.ts', 'testing/t.ts']],
      ['conformance/x.ts', []],
    ]);
    expect(
      findCycles(edges)
        .map((cycle) => cycle.join(' → '))
        .sort(),
    ).toEqual(['adapters/memory/m.ts → core/a.ts → core/b.ts → adapters/memory/m.ts', 'testing/t.ts → testing/t.ts']);
    expect(layeringViolations(edges)).toEqual([
      'adapters/memory/m.ts → adapters/sqlite/s.ts (an adapter imports only core and its own folder)',
      'core/b.ts → adapters/memory/m.ts (core imports only core)',
      'testing/t.ts → conformance/x.ts (testing does not import conformance)',
    ]);
  });
});
