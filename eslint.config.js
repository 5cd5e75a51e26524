import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', '.test-bundles/', 'node_modules/', 'data/', 'coverage/', 'test-artifacts/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', URL: 'readonly', setTimeout: 'readonly', clearTimeout: 'readonly', setInterval: 'readonly', clearInterval: 'readonly', fetch: 'readonly', AbortController: 'readonly', TextEncoder: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-non-null-assertion': 'off',
      'no-control-regex': 'off',
    },
  },
  // Migrations are frozen in time and must not depend on today's table types: Kysely<any> by design.
  { files: ['migrations/**', 'src/db/migrator.ts'], rules: { '@typescript-eslint/no-explicit-any': 'off' } },
  // Tests read JSON bodies and check them with assertions; typing every body would only restate them.
  { files: ['test/**'], rules: { '@typescript-eslint/no-explicit-any': 'off' } },
  // The operations board's page scripts run in the browser, as ES modules.
  {
    files: ['src/board/public/**/*.js'],
    languageOptions: {
      sourceType: 'module',
      globals: { window: 'readonly', document: 'readonly', location: 'readonly', history: 'readonly', sessionStorage: 'readonly', getComputedStyle: 'readonly', atob: 'readonly', URLSearchParams: 'readonly', Node: 'readonly', Intl: 'readonly' },
    },
  },
);
