import { isIPv4, isIPv6 } from 'node:net';

/** A URL hostname without the brackets an IPv6 literal carries in a URL. */
function bare(hostname: string): string {
  return hostname.startsWith('[') && hostname.endsWith(']') ? hostname.slice(1, -1) : hostname;
}

/**
 * Loopback by address, not by spelling: "127.evil.example" is a DNS name, not 127.0.0.0/8.
 * Plain http is allowed only to such hosts (JWKS, sinks, notifications, connectors, rotators).
 */
export function isLoopbackHost(hostname: string): boolean {
  const host = bare(hostname).toLowerCase();
  if (host === 'localhost') return true;
  if (isIPv4(host)) return host.split('.')[0] === '127';
  // WHATWG URL parsing already compresses IPv6, so ::1 has one spelling here.
  return isIPv6(host) && host === '::1';
}

/** Names the cloud providers give their instance metadata services. */
const METADATA_NAMES = new Set(['metadata', 'metadata.google.internal', 'metadata.goog', 'instance-data', 'instance-data.ec2.internal']);

/** Whether eight IPv6 groups are IPv4-mapped (::ffff:0:0/96): the IPv4 host itself, as a dual-stack socket shows it. */
const isMapped = (g: readonly number[]) => g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff;

/** The IPv4 address in the last 32 bits of eight IPv6 groups, dotted. */
const dottedTail = (g: readonly number[]) => `${g[6]! >> 8}.${g[6]! & 255}.${g[7]! >> 8}.${g[7]! & 255}`;

/** Azure's WireServer: VM agent configuration and certificates, reachable from any Azure VM. */
const AZURE_WIRESERVER = '168.63.129.16';

/**
 * Addresses Keyhold never sends a request to on a caller's behalf: link-local ranges, where cloud
 * instance metadata services answer with the host's own credentials (169.254.169.254,
 * fd00:ec2::254, Alibaba's 100.100.100.200), Azure's WireServer, and the unspecified addresses.
 * Private networks are not refused: connectors legitimately reach internal APIs and databases.
 */
export function isForbiddenAddress(address: string): boolean {
  const ip = bare(address).toLowerCase().replace(/%.*$/, '');
  if (isIPv4(ip)) return isForbiddenV4(ip);
  if (!isIPv6(ip)) return false;
  const g = ipv6Groups(ip);
  if (deliveredV4(g).some(isForbiddenV4)) return true;
  return (g[0]! & 0xffc0) === 0xfe80 || g.every((x) => x === 0) || g.join(':') === AWS_V6_METADATA;
}

function isForbiddenV4(v4: string): boolean {
  const [a, b] = v4.split('.').map(Number) as [number, number];
  return (a === 169 && b === 254) || a === 0 || v4 === '100.100.100.200' || v4 === AZURE_WIRESERVER;
}

/** fd00:ec2::254 as its eight groups. */
const AWS_V6_METADATA = [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254].join(':');

/**
 * The IPv4 addresses an IPv6 address may reach, in any spelling: IPv4-mapped (::ffff:0:0/96),
 * IPv4-translated (::ffff:0:0:0/96), IPv4-compatible (::/96, deprecated but still parsed), the
 * NAT64 well-known prefix (64:ff9b::/96) and the local-use NAT64 prefix (64:ff9b:1::/48), whose
 * networks may embed the IPv4 address at any of RFC 6052's positions for a /48 to /96 prefix, so
 * each is a candidate (but 0.0.0.0/8, which is the zero padding of the other positions, and no
 * destination a gateway translates to).
 */
function deliveredV4(g: readonly number[]): string[] {
  const zeros = (from: number, to: number) => g.slice(from, to).every((x) => x === 0);
  // ::a.b.c.d for a first octet of 1 or more: ::/104 (::, ::1, ::2, ...) are not IPv4 addresses.
  const compatible = zeros(0, 6) && g[6]! >= 0x100;
  const translated = zeros(0, 4) && g[4] === 0xffff && g[5] === 0;
  const wellKnownNat64 = g[0] === 0x64 && g[1] === 0xff9b && zeros(2, 6);
  if (isMapped(g) || compatible || translated || wellKnownNat64) return [dottedTail(g)];
  if (g[0] === 0x64 && g[1] === 0xff9b && g[2] === 1) {
    const bytes = g.flatMap((x) => [x >> 8, x & 255]);
    const at = (...i: number[]) => i.map((n) => bytes[n]).join('.');
    return [at(6, 7, 9, 10), at(7, 9, 10, 11), at(9, 10, 11, 12), at(12, 13, 14, 15)].filter((v4) => !v4.startsWith('0.'));
  }
  return [];
}

/** A hostname that is, or names, a metadata service or a forbidden address (no DNS lookup: see connectors/address-guard.ts for that). */
export function isForbiddenHost(hostname: string): boolean {
  const host = bare(hostname).toLowerCase().replace(/\.$/, '');
  return METADATA_NAMES.has(host) || isForbiddenAddress(host);
}

/** The eight 16-bit groups of a valid IPv6 literal (`::` expanded, a trailing dotted quad as two groups). */
function ipv6Groups(ip: string): number[] {
  const [head, tail] = ip.includes('::') ? ip.split('::') as [string, string] : [ip, null];
  const parse = (part: string) => (part === '' ? [] : part.split(':').flatMap((g) => {
    if (!g.includes('.')) return [parseInt(g, 16)];
    const [a, b, c, d] = g.split('.').map(Number) as [number, number, number, number];
    return [(a << 8) | b, (c << 8) | d];
  }));
  const front = parse(head);
  if (tail === null) return front;
  const back = parse(tail);
  return [...front, ...Array<number>(8 - front.length - back.length).fill(0), ...back];
}

/**
 * The network a per-address rate limit counts a client in: an IPv4 address itself (also when a
 * dual-stack listener shows it IPv4-mapped), an IPv6 address's /64. One host on an ordinary IPv6
 * link may send from any of the 2^64 addresses of its prefix, so a budget per IPv6 address would
 * be no budget at all.
 * @example addressBlock('2001:db8::7') // '2001:db8:0:0::/64'
 */
export function addressBlock(address: string): string {
  const ip = bare(address).toLowerCase().replace(/%.*$/, '');
  if (!isIPv6(ip)) return ip;
  const g = ipv6Groups(ip);
  return isMapped(g) ? dottedTail(g) : `${g.slice(0, 4).map((x) => x.toString(16)).join(':')}::/64`;
}
