/**
 * Query strings written without re-encoding what is already there. `URLSearchParams` rewrites a whole query
 * when one parameter changes (`%20` becomes `+`, `%7E` becomes `~`), and a webhook URL's signed query
 * (Teams Workflows, Logic Apps: `?api-version=…&sig=…`) must reach its server byte for byte.
 */

/** The decoded name of each `name=value` pair of a query (without its leading '?'). */
export function queryNames(query: string): Set<string> {
  return new Set(new URLSearchParams(query).keys());
}

/** Appends pairs after whatever query `url` already carries, leaving that text as it is. */
export function appendQuery(url: URL, pairs: Array<[string, string]>): void {
  if (pairs.length === 0) return;
  const added = new URLSearchParams(pairs).toString();
  url.search = url.search.length > 1 ? `${url.search.slice(1)}&${added}` : added;
}

/** Sets one parameter: every pair of that name is dropped (compared decoded), the new one appended, the rest kept as written. */
export function setQueryParam(url: URL, name: string, value: string): void {
  const kept = url.search.slice(1).split('&').filter((pair) => pair !== '' && !queryNames(pair).has(name));
  url.search = [...kept, new URLSearchParams([[name, value]]).toString()].join('&');
}
