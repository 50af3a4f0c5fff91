/** Where a JSON text names a key twice in one object: the key (unescaped), the object's path, and the repeat's offset in the text. */
export interface DuplicateKey {
  key: string;
  /** From the top: the keys and array indexes leading to the object that holds the key twice. */
  path: Array<string | number>;
  /** The index in the text of the second occurrence's opening quote. */
  offset: number;
}

/** One open object or array. Kept per depth and reused, so a body of many small objects allocates no frame per object. */
interface Frame {
  object: boolean;
  /** An array's current index. */
  index: number;
  /**
   * An object's keys so far: its first; from the second, a list while the object is short (most
   * are; the list is made once per depth and reused); past that, a set.
   */
  first: string | undefined;
  list: string[] | null;
  set: Set<string> | null;
  /** An object's latest key: where the frame above sits in it. */
  last: string;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
/** Up to this many keys an object's are compared one by one; past it, hashed. */
const SHORT = 8;

/** The index of the quote that closes the string opening at `start`. Walks back over the backslashes before each quote found; the walks never overlap, so it stays linear. */
function stringEnd(text: string, start: number): number {
  let from = start + 1;
  for (;;) {
    const quote = text.indexOf('"', from);
    if (quote === -1) return text.length;
    let b = quote - 1;
    while (text.charCodeAt(b) === BACKSLASH) b--;
    if ((quote - 1 - b) % 2 === 0) return quote;
    from = quote + 1;
  }
}

/**
 * The first key a JSON object in `text` names twice, compared as JSON.parse sees keys (after
 * unescaping: "a" and "\u0061" are one key), or null. JSON.parse keeps the last of the two, other
 * readers the first: a proxy or policy check in front could judge one value while we use the other.
 *
 * `text` must already be valid JSON (run it after JSON.parse). One pass, no recursion: time is
 * linear in the text and nesting depth costs only a frame per level.
 * @example firstDuplicateKey('{"a":[{"b":1,"\\u0062":2}]}') // { key: 'b', path: ['a', 0], offset: 13 }
 */
export function firstDuplicateKey(text: string): DuplicateKey | null {
  // No object, no key: arrays and scalars need no walk.
  if (text.indexOf('{') === -1) return null;
  const frames: Frame[] = [];
  let depth = 0;
  let top: Frame | undefined;
  let expectKey = false;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const end = stringEnd(text, i);
      if (expectKey && top !== undefined) {
        const raw = text.slice(i + 1, end);
        const key = raw.indexOf('\\') === -1 ? raw : (JSON.parse(text.slice(i, end + 1)) as string);
        if (top.first === undefined) top.first = key;
        else if (top.set !== null) {
          if (top.set.has(key)) return found(frames, depth, key, i);
          top.set.add(key);
        } else {
          if (key === top.first) return found(frames, depth, key, i);
          const list = (top.list ??= []);
          for (let k = 0; k < list.length; k++) if (list[k] === key) return found(frames, depth, key, i);
          list.push(key);
          if (list.length >= SHORT) top.set = new Set([top.first, ...list]);
        }
        top.last = key;
        expectKey = false;
      }
      i = end;
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      const object = c === 0x7b;
      top = frames[depth] ??= { object, index: 0, first: undefined, list: null, set: null, last: '' };
      top.object = object;
      top.index = 0;
      top.first = undefined;
      if (top.list !== null) top.list.length = 0;
      top.set = null;
      depth++;
      expectKey = object;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      depth--;
      top = depth > 0 ? frames[depth - 1] : undefined;
      expectKey = false;
    } else if (c === 0x2c /* , */ && top !== undefined) {
      if (top.object) expectKey = true;
      else top.index++;
    }
  }
  return null;
}

function found(frames: Frame[], depth: number, key: string, offset: number): DuplicateKey {
  const path: Array<string | number> = [];
  for (let d = 0; d < depth - 1; d++) path.push(frames[d]!.object ? frames[d]!.last : frames[d]!.index);
  return { key, path, offset };
}

/** The 1-based line and column of an offset in a text, for a message about a file. */
export function lineAndColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset);
  return { line: before.split('\n').length, column: offset - before.lastIndexOf('\n') };
}
