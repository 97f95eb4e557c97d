/** `compareIds` is the order of the ids' UTF-8 bytes, for any well-formed strings. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compareIds } from '../../core/ids.js';

const utf8Order = (a: string, b: string): number => Math.sign(Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8')));

describe('compareIds', () => {
  it('puts characters above U+FFFF after U+E000..U+FFFF, as their UTF-8 bytes do (JavaScript < does not)', () => {
    expect(compareIds('a\uE000', 'a\u{1F600}')).toBeLessThan(0);
    expect(compareIds('a\uFFFF', 'a\u{10000}')).toBeLessThan(0);
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- the comparison is what the test checks
    expect('a\u{1F600}' < 'a\uE000').toBe(true);
    expect(compareIds('a', 'a~')).toBeLessThan(0);
    expect(compareIds('same', 'same')).toBe(0);
  });

  it('agrees with the byte order of UTF-8 on random strings, surrogate pairs included', () => {
    // Characters from the ranges where the two orders differ, plus ASCII.
    const char = fc.oneof(
      fc.constantFrom('a', 'b', '~', '\u00e9', '\u0800', '\uD7FF', '\uE000', '\uFFFF'),
      fc.integer({ min: 0x10000, max: 0x10ffff }).map((cp) => String.fromCodePoint(cp)),
      fc.integer({ min: 0xe000, max: 0xffff }).map((cp) => String.fromCodePoint(cp)),
    );
    const id = fc.array(char, { maxLength: 5 }).map((chars) => chars.join(''));
    fc.assert(
      fc.property(id, id, (a, b) => Math.sign(compareIds(a, b)) === utf8Order(a, b)),
      { numRuns: 2000 },
    );
  });
});
