import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseFormBody } from './form-body.ts';

const SECRET = 'khcs_form-canary-0123456789';
const parse = (body: string | Buffer) => parseFormBody(typeof body === 'string' ? Buffer.from(body, 'utf8') : body);

test('a form body decodes + as a space and %XX as UTF-8, and keeps every value a string', () => {
  const cases: Array<[string, Record<string, string>]> = [
    ['grant_type=client_credentials&client_id=khc_a', { grant_type: 'client_credentials', client_id: 'khc_a' }],
    ['a=one+two&b=1%2B1&c=caf%C3%A9', { a: 'one two', b: '1+1', c: 'café' }],
    ['a=1&&b=2&', { a: '1', b: '2' }],
    ['flag&empty=', { flag: '', empty: '' }],
    ['n=12&t=true', { n: '12', t: 'true' }],
    ['eq=a%3Db=c', { eq: 'a=b=c' }],
    ['', {}],
  ];
  for (const [body, expected] of cases) assert.deepEqual(parse(body), expected, body);
  assert.deepEqual(parse('raw=café'), { raw: 'café' }, 'raw UTF-8 bytes are taken as UTF-8');
});

test('a __proto__ parameter becomes an own field for the schema to refuse, never the prototype', () => {
  const parsed = parse('__proto__=x&constructor=y');
  assert.equal(Object.getPrototypeOf(parsed), Object.prototype);
  assert.deepEqual(Object.keys(parsed), ['__proto__', 'constructor']);
  assert.equal(({} as Record<string, unknown>).x, undefined);
});

test('a parameter given twice is refused, however it is spelled', () => {
  for (const body of ['a=1&a=2', 'a=1&a=1', 'client_id=x&client%5Fid=x', 'a&a', 'x+y=1&x%20y=2', `client_secret=${SECRET}&client_secret=${SECRET}`]) {
    assert.throws(() => parse(body), (err: { code?: string; message: string }) => {
      assert.equal(err.code, 'DUPLICATE_PARAMETER', body);
      assert.ok(!err.message.includes(SECRET));
      return true;
    });
  }
});

test('broken percent-encoding and bytes that are not UTF-8 are refused, never replaced, and the value is not echoed', () => {
  const bodies: Array<string | Buffer> = [
    `client_secret=${SECRET}%zz`, `client_secret=${SECRET}%`, `client_secret=${SECRET}%4`, `client_secret=${SECRET}%e9`,
    `client_secret=${SECRET}%C3`, `client_secret=${SECRET}%ED%A0%80`, `%ff=${SECRET}`,
    Buffer.concat([Buffer.from(`client_secret=${SECRET}`), Buffer.from([0xff, 0xc3])]),
  ];
  for (const body of bodies) {
    assert.throws(() => parse(body), (err: { code?: string; message: string }) => {
      assert.equal(err.code, 'MALFORMED_FORM', String(body));
      assert.ok(!err.message.includes(SECRET));
      return true;
    });
  }
});
