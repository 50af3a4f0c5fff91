import { fail } from '../../errors/index.ts';

/**
 * Control characters (terminal escapes, line breaks, bell…), the line and paragraph separators
 * (U+2028, U+2029: mandatory breaks to a Unicode renderer, as LF is) and the invisible direction
 * marks and overrides. A justification or comment is shown to approvers as one line ("Justification: …"),
 * a secret's owner, label, purpose, tags and a write's reason as cells of listings: any of these could
 * redraw them, e.g. paint "Environment: staging" over the production a request is for, or a fake row.
 */
export const UNPRINTABLE = /[\p{Cc}\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;

/** Refuses typed text (`what` names the field) that holds a character that could change what a reader sees. */
export function assertPrintable(what: string, text: string): void {
  const bad = UNPRINTABLE.exec(text);
  if (bad) fail('VALIDATION_FAILED', `${what} holds an unprintable character (U+${bad[0].codePointAt(0)!.toString(16).padStart(4, '0').toUpperCase()}) at offset ${bad.index}: write it on one line, without control characters`);
}

/**
 * How many characters of `text` a reader sees: not the default-ignorable ones (zero-width space, word
 * joiner, BOM, soft hyphen, Hangul fillers), which render as nothing, nor white space of any width or the
 * blank Braille pattern (U+2800), which render as gaps; so a minimum length cannot be met with padding.
 * Counted in code points: an emoji is one character, as a reader sees it.
 */
export function visibleLength(text: string): number {
  return [...text.replace(/[\p{Default_Ignorable_Code_Point}\p{White_Space}\u2800]/gu, '')].length;
}
