// ESLint flat config. Besides the usual checks it enforces the seams of docs/architecture.md:
// pure cores import no I/O, and lib/ imports none of the programs.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Modules that do I/O; the pure cores may not import them. */
export const ioModules = [
  'fs',
  'node:fs',
  'fs/promises',
  'node:fs/promises',
  'net',
  'node:net',
  'tls',
  'node:tls',
  'dgram',
  'node:dgram',
  'http',
  'node:http',
  'https',
  'node:https',
  'http2',
  'node:http2',
  'child_process',
  'node:child_process',
  '@grpc/grpc-js',
  '@grpc/proto-loader',
  'fastify',
  'undici',
  '@kubernetes/client-node',
];

/** Folders whose code takes data and returns data (docs/architecture.md, "Seams that must stay clean"). */
export const pureFolders = [
  'store/raft/**',
  'store/mvcc/**',
  'operator/specs/**',
  'operator/plan/**',
  'sidecar/balance/**',
  'sidecar/policies/**',
];
/** Single pure files in folders that also hold drivers. */
export const pureFiles = ['store/state-machine.ts', 'store/auth/auth-store.ts'];

/** The operator and the sidecar import each other's code through neither: what both need is in api/. */
const crossProgram = [
  {
    group: ['**/operator/**'],
    message: 'the sidecar does not import the operator, nor the operator the sidecar: what both need lives in api/',
  },
  {
    group: ['**/sidecar/**'],
    message: 'the operator does not import the sidecar, nor the sidecar the operator: what both need lives in api/',
  },
];

const ioMessage =
  'pure core: no I/O here (docs/architecture.md, "Seams that must stay clean"); take data, return data, and do the I/O in the driver';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '.tools/**', '.state/**', 'cluster/go/**'] },
  js.configs.recommended,
  ...tseslint.configs.strict,
  {
    languageOptions: { ecmaVersion: 2024, sourceType: 'module', globals: { process: 'readonly', console: 'readonly', URL: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      eqeqeq: ['error', 'always', { null: 'ignore' }],
      // prettier wraps code at 140 (make format); comments are wrapped by hand, and a long string
      // (a message, a test's name, a description) stays whole so it can be searched for.
      'max-len': ['error', { code: 140, ignoreStrings: true, ignoreTemplateLiterals: true, ignoreRegExpLiterals: true, ignoreUrls: true }],
    },
  },
  {
    files: [...pureFolders.map((f) => `${f.replace('/**', '')}/**/*.ts`), ...pureFiles],
    ignores: ['**/*.test.ts'],
    rules: {
      // Type-only imports carry no I/O (the Kubernetes object types a spec builder returns).
      'no-restricted-imports': [
        'error',
        { paths: ioModules.map((name) => ({ name, message: ioMessage, allowTypeImports: true })), patterns: crossProgram },
      ],
      'no-restricted-globals': [
        'error',
        { name: 'setTimeout', message: 'time comes from lib/clock.ts (Clock.setTimeout)' },
        { name: 'setInterval', message: 'time comes from lib/clock.ts (Clock.setInterval)' },
        { name: 'fetch', message: ioMessage },
      ],
      'no-restricted-properties': [
        'error',
        { object: 'Math', property: 'random', message: 'inject a seeded random source (lib/random.ts)' },
        { object: 'Date', property: 'now', message: 'time comes from lib/clock.ts' },
      ],
    },
  },
  {
    files: ['lib/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/cli/**', '**/store/**', '**/operator/**', '**/sidecar/**', '**/cluster/**'],
              message: 'lib/ is shared by every program and imports none of them',
            },
          ],
        },
      ],
    },
  },
  {
    // api/: the contract between the operator and the sidecars (the ResiliencePolicy schema and its
    // validation, the discovery protocol); it belongs to neither program.
    files: ['api/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['**/cli/**', '**/store/**', '**/operator/**', '**/sidecar/**', '**/cluster/**'],
              message: 'api/ is shared by the operator and the sidecar and imports neither (only lib/)',
            },
          ],
        },
      ],
    },
  },
  {
    // (The pure folders carry the same patterns with their I/O rule, which these would replace.)
    files: ['sidecar/**/*.ts'],
    ignores: ['sidecar/balance/**', 'sidecar/policies/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [{ group: ['**/operator/**'], message: 'the sidecar does not import the operator: what both need lives in api/' }],
        },
      ],
    },
  },
  {
    files: ['operator/**/*.ts'],
    ignores: ['operator/plan/**', 'operator/specs/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [{ group: ['**/sidecar/**'], message: 'the operator does not import the sidecar: what both need lives in api/' }],
        },
      ],
    },
  },
  {
    // An ES import of node:http loads Node's bundled undici for three lazy exports: 14 MiB per process.
    files: ['lib/**/*.ts', 'api/**/*.ts', 'cli/**/*.ts', 'store/**/*.ts', 'operator/**/*.ts', 'sidecar/**/*.ts'],
    ignores: ['**/*.test.ts'],
    rules: {
      'no-restricted-syntax': [
        'error',
        {
          selector: "ImportDeclaration[importKind='value'][source.value=/^(node:)?http$/], ImportExpression[source.value=/^(node:)?http$/]",
          message:
            "take node:http's values from lib/node-http.ts (an ES import of node:http loads Node's bundled undici: 14 MiB per process); `import type` from 'node:http' is fine",
        },
      ],
    },
  },
  {
    files: ['**/*.test.ts', 'test/**/*.ts', 'bench/**/*.ts'],
    rules: { '@typescript-eslint/no-non-null-assertion': 'off' },
  },
);
