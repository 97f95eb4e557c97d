import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// strictTypeChecked, type-aware through the project service (tsconfig.json covers every linted .ts file).
// Each exception below has one line saying why; a rule's finding that is a real defect is fixed in code,
// a deliberate one gets a narrow `eslint-disable-next-line <rule> -- <why>` where it stands.
export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', '.tmp/**'] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  { languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } } },
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      // Numbers and booleans read fine in messages; anything else (objects, undefined, unknown) must be made text on purpose.
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true, allowBoolean: true }],
      // Stores implement an async interface with synchronous bodies on purpose: a throw then becomes a rejection.
      '@typescript-eslint/require-await': 'off',
      // `(x) => doSomething(x)` as a callback is the house style; a void call nested in a larger expression is still reported.
      '@typescript-eslint/no-confusing-void-expression': ['error', { ignoreArrowShorthand: true }],
      // A caught value (typed unknown, or any as AbortSignal.reason) is passed along as it was thrown, not wrapped.
      '@typescript-eslint/only-throw-error': ['error', { allowThrowingUnknown: true, allowThrowingAny: true }],
      '@typescript-eslint/prefer-promise-reject-errors': ['error', { allowThrowingUnknown: true, allowThrowingAny: true }],
      // String()/Number() on values typed string/number guard untyped callers at the public API and driver values (pg's int8 as text).
      '@typescript-eslint/no-unnecessary-type-conversion': 'off',
      // A return-only type parameter names the type of untyped data at the call site (JSON.parse, SQL rows, column declarations).
      '@typescript-eslint/no-unnecessary-type-parameters': 'off',
    },
  },
  {
    // Tests, conformance checks and benches use `!` right after an explicit check or on a row they just wrote.
    files: ['test/**', 'conformance/**', 'bench/**'],
    rules: { '@typescript-eslint/no-non-null-assertion': 'off' },
  },
  {
    files: ['test/**'],
    rules: {
      // Tests throw non-Error values on purpose, to check how the runtime reports them.
      '@typescript-eslint/only-throw-error': 'off',
      // vitest's asymmetric matchers (expect.objectContaining, expect.stringContaining) are typed any.
      '@typescript-eslint/no-unsafe-assignment': 'off',
    },
  },
  {
    // The examples docs/testing.md embeds are written as a user writes them: JSON.parse results and caught errors used directly.
    files: ['test/testing/examples/**'],
    rules: {
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/use-unknown-in-catch-callback-variable': 'off',
    },
  },
  {
    // node:test tracks the promise each test() returns; the Node documentation calls it without await.
    files: ['test/testing/node-test-runner.mts'],
    rules: { '@typescript-eslint/no-floating-promises': 'off' },
  },
  // Plain JavaScript (this file, scripts/*.mjs) is linted without type information.
  { files: ['**/*.js', '**/*.mjs'], ...tseslint.configs.disableTypeChecked },
);
