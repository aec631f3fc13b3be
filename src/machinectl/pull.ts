// pull-tar URL [NAME]: downloads a tar archive over HTTP or HTTPS and unpacks it as it arrives
// (import-export.ts's landing: nothing under the final name until it is all there and checked).
// --verify=checksum reads SHA256SUMS from the URL's directory first, as systemd-importd does, and
// the image is kept only if the SHA-256 of the bytes received matches its line; --verify=no skips
// that. A download that ends before its Content-Length, a redirect loop, a status other than 200,
// or a connection silent for 30 s fails the pull.
import { createHash } from 'node:crypto';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { basename } from 'node:path';
import { ImageError, type ImageStore } from '../runtime/images.js';
import { checkTarget, Landing } from './landing.js';
import { interruptible, nameFromSource, progressFor, type ImportOptions } from './import-export.js';
import { extractTar } from './transfer.js';

export type Verify = 'no' | 'checksum';

export interface PullOptions extends ImportOptions {
  verify: Verify;
  /** idle time after which a connection is given up (default 30 s) */
  idleTimeoutMs?: number;
}

const MAX_REDIRECTS = 5;
const MAX_SUMS_BYTES = 1 << 20;

function parseUrl(url: string): URL {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ImageError('PULL_URL', `Invalid URL: ${url} (pull-tar takes an http:// or https:// URL)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new ImageError('PULL_URL', `Unsupported URL scheme ${u.protocol} in ${url}; pull-tar downloads over http:// and https://`);
  return u;
}

/** GET `url`, following redirects; resolves with a 200 response (its body not yet read). */
function get(url: URL, idleTimeoutMs: number, redirects = 0): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const mod = url.protocol === 'https:' ? https : http;
    const req = mod.get(url, { headers: { 'user-agent': 'machinectl-ts (nspawn-ts)', 'accept-encoding': 'identity' } }, (res) => {
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400 && res.headers.location) {
        res.resume();
        if (redirects >= MAX_REDIRECTS) {
          reject(new ImageError('PULL_HTTP', `Too many redirects fetching ${url.href}`));
          return;
        }
        const next = new URL(res.headers.location, url);
        if (next.protocol !== 'http:' && next.protocol !== 'https:') {
          reject(new ImageError('PULL_HTTP', `${url.href} redirects to an unsupported URL: ${next.href}`));
          return;
        }
        get(next, idleTimeoutMs, redirects + 1).then(resolve, reject);
        return;
      }
      if (status !== 200) {
        res.resume();
        reject(new ImageError('PULL_HTTP', `Downloading ${url.href} failed: HTTP ${status} ${res.statusMessage ?? ''}`.trim()));
        return;
      }
      res.setTimeout(idleTimeoutMs, () => res.destroy(new ImageError('PULL_TIMEOUT', `No data from ${url.href} for ${idleTimeoutMs / 1000} s`)));
      resolve(res);
    });
    req.setTimeout(idleTimeoutMs, () => req.destroy(new ImageError('PULL_TIMEOUT', `No answer from ${url.host} within ${idleTimeoutMs / 1000} s`)));
    req.on('error', (err) => reject(err instanceof ImageError ? err : new ImageError('PULL_HTTP', `Downloading ${url.href} failed: ${err.message}`, { cause: err })));
  });
}

/** The SHA-256 that SHA256SUMS gives for `file` ("HASH *FILE" or "HASH  FILE" lines). */
export function checksumFor(sums: string, file: string): string | undefined {
  for (const line of sums.split('\n')) {
    const m = /^([0-9a-fA-F]{64}) [ *](?:\.\/)?(.+?)\r?$/.exec(line);
    if (m && m[2] === file) return (m[1] as string).toLowerCase();
  }
  return undefined;
}

async function fetchSums(url: URL, idleTimeoutMs: number): Promise<string> {
  const res = await get(url, idleTimeoutMs);
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const c of res as AsyncIterable<Buffer>) {
      size += c.length;
      if (size > MAX_SUMS_BYTES) throw new ImageError('PULL_CHECKSUM', `${url.href} is larger than ${MAX_SUMS_BYTES} bytes; not a SHA256SUMS file`);
      chunks.push(c);
    }
  } catch (err) {
    if (err instanceof ImageError) throw err;
    throw new ImageError('PULL_HTTP', `Downloading ${url.href} failed: ${(err as Error).message}`, { cause: err });
  }
  return Buffer.concat(chunks).toString('utf8');
}

export async function pullTar(images: ImageStore, url: string, nameArg: string | undefined, opts: PullOptions): Promise<string> {
  const u = parseUrl(url);
  const file = basename(decodeURIComponent(u.pathname));
  const name = nameArg ?? nameFromSource(u.pathname);
  checkTarget(images, name, opts);
  const idle = opts.idleTimeoutMs ?? 30_000;
  let expected: string | undefined;
  if (opts.verify === 'checksum') {
    const sumsUrl = new URL('SHA256SUMS', u);
    const sums = await fetchSums(sumsUrl, idle);
    expected = checksumFor(sums, file);
    if (expected === undefined) {
      throw new ImageError('PULL_CHECKSUM', `${sumsUrl.href} has no checksum for ${file}; nothing was downloaded (--verify=no skips the check)`);
    }
  }
  const res = await get(u, idle);
  const lengthHeader = res.headers['content-length'];
  const total = lengthHeader !== undefined && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : undefined;
  let landing: Landing | undefined;
  return interruptible(() => landing?.abort(), async () => {
    try {
      landing = Landing.begin(images, name, opts);
    } catch (err) {
      res.destroy();
      throw err;
    }
    const progress = progressFor(opts.io, `Downloading ${file}`, total);
    const hash = createHash('sha256');
    let received = 0;
    try {
      try {
        await extractTar(res as AsyncIterable<Buffer>, landing.dir, (c) => {
          received += c.length;
          hash.update(c);
          progress.add(c.length);
        }, landing.lockFd);
      } catch (err) {
        // a cut connection shows as a failed read, or as tar finding the archive cut short
        if (total !== undefined && received < total) {
          throw new ImageError('PULL_TRUNCATED', `The download of ${u.href} ended after ${received} of ${total} bytes`, { cause: err });
        }
        if (err instanceof ImageError) throw err;
        throw new ImageError('PULL_HTTP', `Downloading ${u.href} failed: ${(err as Error).message}`, { cause: err });
      }
      if (total !== undefined && received !== total) {
        throw new ImageError('PULL_TRUNCATED', `The download of ${u.href} ended after ${received} of ${total} bytes`);
      }
      const actual = hash.digest('hex');
      if (expected !== undefined && actual !== expected) {
        throw new ImageError('PULL_CHECKSUM', `Checksum mismatch for ${file}: SHA256SUMS says ${expected}, the download has ${actual}; the image was not kept`);
      }
      progress.finish(true);
      return await landing.commit({ readOnly: opts.readOnly ?? false });
    } catch (err) {
      progress.finish(false);
      landing.abort();
      res.destroy();
      throw err;
    }
  });
}
