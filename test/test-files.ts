/** Where test files live: what `npm run test:only` runs when given no files, and what test/run.test.ts checks. */
export const DEFAULT_TEST_FILES = ['src/**/*.test.ts', 'test/**/*.test.ts'];
