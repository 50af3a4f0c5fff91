import assert from 'node:assert/strict';

/** Asserts that `p` rejects with a Keyhold error of `code`. */
export const rejects = (p: Promise<unknown>, code: string) => assert.rejects(p, (err: { code?: string }) => {
  assert.equal(err.code, code);
  return true;
});

/** The error code a promise rejects with, or 'ok'. */
export function codeOf(p: Promise<unknown>): Promise<string> {
  return p.then(() => 'ok', (err: { code?: string }) => err.code ?? String(err));
}
