import { ConfigError } from '../../../../config/config.ts';
import { isLoopbackHost } from '../../../../platform/addresses.ts';

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

