import { describe, expect, it } from 'vitest';
import { copyHeaders, createHeaders, parseHeadersJson } from '../../core/headers.js';

describe('header maps', () => {
  it('have no Object.prototype in their chain: inherited names read as absent', () => {
    const headers = createHeaders();
    expect(Object.prototype.isPrototypeOf.call(Object.prototype, headers)).toBe(false);
    for (const name of ['toString', 'constructor', 'hasOwnProperty', '__proto__', 'valueOf']) {
      expect(name in headers).toBe(false);
      expect(headers[name]).toBeUndefined();
    }
  });

  it('keep __proto__ and constructor as own data, never touching a prototype', () => {
    const copied = copyHeaders(parseHeadersJson('{"__proto__":"p","constructor":"c"}'));
    copied['__proto__'] = 'p2';
    expect(Object.keys(copied).sort()).toEqual(['__proto__', 'constructor']);
    expect(copied['__proto__']).toBe('p2');
    expect(Object.getPrototypeOf(Object.getPrototypeOf(copied))).toBeNull();
    expect(JSON.parse(JSON.stringify(copied))).toEqual({ ['__proto__']: 'p2', constructor: 'c' });
    expect(Object.prototype.hasOwnProperty.call(Object.prototype, 'p2')).toBe(false);
  });

  it('do not share keys between maps', () => {
    const a = createHeaders();
    a.k = 'v';
    expect(createHeaders().k).toBeUndefined();
  });
});
