import { ConfigError } from '../../../../config/config.ts';

/** A webhook URL: https anywhere, plain http only to this machine (loopback). */
export function parseWebhookUrl(setting: string, text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(setting, 'is not a URL');
  }
  if (url.protocol === 'https:') return url;
  if (url.protocol === 'http:' && isLoopbackHost(url.hostname)) return url;
  if (url.protocol === 'http:') throw new ConfigError(setting, 'must use https unless it points at loopback (127.0.0.0/8, ::1, localhost)');
  throw new ConfigError(setting, 'must be an http(s) URL');
}

export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.toLowerCase();
  if (host === 'localhost' || host === '[::1]') return true;
  const v4 = /^127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(host);
  return v4 !== null && v4.slice(1).every((part) => Number(part) <= 255);
}
