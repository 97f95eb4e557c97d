/**
 * What the PostgreSQL store does with strings PostgreSQL cannot hold: a NUL
 * character (text and jsonb refuse it) and a lone UTF-16 surrogate (not
 * Unicode; jsonb refuses its escape, and the driver's UTF-8 encoding would
 * silently turn it into U+FFFD). One place decides, per field:
 *
 * - diagnostic text (a nack's error, a dead-letter reason, so `lastError`):
 *   each such character is replaced with U+FFFD, so the settlement commits
 *   and the run ends with a readable message;
 * - headers: stored faithfully (they are kept as JSON text, whose escapes
 *   carry any string);
 * - identities (job ids, queue names, dedup keys, kv keys): refused with
 *   `InvalidArgumentError` before anything is sent, because a replacement
 *   could make two distinct keys one.
 *
 * Either way no such value reaches a statement, where it would fail every
 * settlement and claim sharing it.
 */
import { InvalidArgumentError } from '../../core/errors.js';
import { describe } from '../../core/store-validation.js';

/** NUL, a high surrogate not followed by a low one, a low surrogate not preceded by a high one. */
// eslint-disable-next-line no-control-regex -- NUL is exactly what PostgreSQL text refuses
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
const UNSTORABLE_TEST = new RegExp(UNSTORABLE.source);

/** Diagnostic text made storable: every NUL and lone surrogate becomes U+FFFD. */
export function storableText(text: string): string {
  return UNSTORABLE_TEST.test(text) ? text.replace(UNSTORABLE, '\uFFFD') : text;
}

/** Refuses an identity PostgreSQL cannot store exactly (see the module comment). */
export function checkStorableText(name: string, value: string): void {
  if (UNSTORABLE_TEST.test(value)) {
    throw new InvalidArgumentError(name, `PostgreSQL cannot store a NUL character or a lone UTF-16 surrogate, got ${describe(value)}`);
  }
}
