// Tar streams in and out of directory images, with the system's tools: GNU tar (owners by number,
// modes, xattrs, ACLs, device nodes, hard links, sparse files — what systemd-importd's tar also
// keeps) and gzip, xz, zstd, bzip2 for compression. Reading, the compression is found from the
// stream's first bytes, as systemd-importd finds it; writing, from the file name's suffix.
//
// Extraction is as safe as GNU tar makes it, which is what systemd-importd relies on too: members
// named with ".." are refused, leading "/" is stripped, and symlinks whose targets are absolute or
// contain ".." are made as placeholders until the end of the archive, so a later member cannot be
// written through them onto the host. Any error of tar fails the whole import; the half-made
// directory is removed by the caller (landing.ts). Absolute links stay as they are: inside the
// image they mean the container's paths.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import type { Writable } from 'node:stream';
import { ImageError } from '../runtime/images.js';

export type Compression = 'none' | 'gzip' | 'xz' | 'zstd' | 'bzip2';

const DECOMPRESS: Record<Exclude<Compression, 'none'>, string[]> = {
  gzip: ['gzip', '-dc'],
  xz: ['xz', '-dc'],
  zstd: ['zstd', '-dcq'],
  bzip2: ['bzip2', '-dc'],
};

const COMPRESS: Record<Exclude<Compression, 'none'>, string[]> = {
  gzip: ['gzip', '-c'],
  xz: ['xz', '-c', '-T0'],
  zstd: ['zstd', '-cq', '-T0'],
  bzip2: ['bzip2', '-c'],
};

/** The tar file suffixes systemd knows (tar_strip_suffixes()), longest first. */
const TAR_SUFFIXES: Array<[string, Compression]> = [
  ['.tar.gz', 'gzip'], ['.tar.xz', 'xz'], ['.tar.zst', 'zstd'], ['.tar.bz2', 'bzip2'],
  ['.tgz', 'gzip'], ['.txz', 'xz'], ['.tzst', 'zstd'], ['.tbz2', 'bzip2'], ['.tar', 'none'],
];

/** The compression a file name asks for (export-tar), by its suffix. */
export function compressionFromName(file: string): Compression {
  for (const [suffix, c] of TAR_SUFFIXES) if (file.endsWith(suffix)) return c;
  if (file.endsWith('.gz')) return 'gzip';
  if (file.endsWith('.xz')) return 'xz';
  if (file.endsWith('.zst')) return 'zstd';
  if (file.endsWith('.bz2')) return 'bzip2';
  return 'none';
}

/** The compression of a stream, from its first bytes (import_uncompress_detect()). */
export function compressionFromMagic(head: Buffer): Compression {
  if (head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]))) return 'xz';
  if (head.subarray(0, 4).equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]))) return 'zstd';
  if (head.subarray(0, 3).toString('latin1') === 'BZh') return 'bzip2';
  return 'none';
}

/** A tar file's name without its tar suffixes ("debian-12.tar.xz" → "debian-12"). */
export function stripTarSuffix(file: string): string {
  for (const [suffix] of TAR_SUFFIXES) if (file.endsWith(suffix)) return file.slice(0, -suffix.length);
  return file;
}

/** What GNU tar keeps of an image, both ways. */
const TAR_KEEP = ['--numeric-owner', '--xattrs', '--xattrs-include=*', '--acls', '--selinux'];

interface Tool {
  child: ChildProcess;
  name: string;
  stderr: () => string;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** The tools of transfers under way (stopTransferTools() ends them when the user interrupts). */
const running = new Set<Tool>();

/** Kills the running tar and compressors and waits until they are gone (before their output is removed). */
export async function stopTransferTools(): Promise<void> {
  const tools = [...running];
  for (const t of tools) t.child.kill('SIGKILL');
  await Promise.allSettled(tools.map((t) => t.done));
}

export function tool(argv: string[], stdio: Array<'pipe' | 'ignore' | 'inherit' | number>): Tool {
  const child = spawn(argv[0] as string, argv.slice(1), { stdio: stdio as never });
  // a tool that quits early breaks its pipe: reported by its exit status (checked()), not as a crash
  child.stdin?.on('error', () => {});
  let err = '';
  child.stderr?.on('data', (d: Buffer) => {
    if (err.length < 16384) err += d.toString();
  });
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.on('error', (e) => reject(new ImageError('TRANSFER_TOOL', `Could not run ${argv[0]}: ${e.message} (is it installed?)`, { cause: e })));
    child.on('close', (code, signal) => resolve({ code, signal }));
  });
  const t = { child, name: argv[0] as string, stderr: () => err.trim(), done };
  running.add(t);
  done.finally(() => running.delete(t)).catch(() => {});
  return t;
}

export async function checked(tools: readonly Tool[], what: string): Promise<void> {
  const results = await Promise.all(tools.map((t) => t.done));
  results.forEach((r, i) => {
    const t = tools[i] as Tool;
    if (r.code === 0) return;
    const how = r.signal ? `was killed by ${r.signal}` : `exited with status ${r.code}`;
    const said = t.stderr();
    throw new ImageError('TRANSFER_FAILED', `${what}: ${t.name} ${how}${said ? `: ${said.split('\n').slice(-5).join('; ')}` : ''}`);
  });
}

/**
 * Ends the tools after `err`; a broken pipe means one of them quit first, and what it said is the
 * error to report.
 */
async function failure(tools: readonly Tool[], err: unknown): Promise<unknown> {
  const brokenPipe = (err as NodeJS.ErrnoException).code === 'EPIPE' || (err as NodeJS.ErrnoException).code === 'ERR_STREAM_DESTROYED';
  if (brokenPipe) {
    try {
      await Promise.race([checked(tools, 'The transfer failed'), new Promise((r) => setTimeout(r, 2000))]);
    } catch (toolErr) {
      err = toolErr;
    }
  }
  for (const t of tools) if (t.child.exitCode === null && t.child.signalCode === null) t.child.kill('SIGKILL');
  await Promise.allSettled(tools.map((t) => t.done));
  return err;
}

async function writeAll(stream: Writable, chunk: Buffer): Promise<void> {
  if (stream.write(chunk)) return;
  await new Promise<void>((resolve, reject) => {
    const onDrain = (): void => { stream.off('error', onError); resolve(); };
    const onError = (e: Error): void => { stream.off('drain', onDrain); reject(e); };
    stream.once('drain', onDrain);
    stream.once('error', onError);
  });
}

/**
 * Unpacks a tar stream (compressed or not) into `dir`, feeding `onChunk` each chunk as it is read
 * (progress, checksums). Rejects when the input fails, ends early, or tar finds anything wrong.
 * `holdFd` (the landing's lock) is passed on to tar, so the directory stays locked while tar
 * writes into it, even if we are killed first.
 */
export async function extractTar(input: AsyncIterable<Buffer | string>, dir: string, onChunk: (chunk: Buffer) => void, holdFd?: number): Promise<void> {
  const tools: Tool[] = [];
  try {
    let head = Buffer.alloc(0);
    let sink: Writable | undefined;
    const open = (): Writable => {
      const c = compressionFromMagic(head);
      const tar = tool(['tar', '--extract', '--file=-', `--directory=${dir}`, '--same-owner', '--same-permissions', ...TAR_KEEP],
        ['pipe', 'ignore', 'pipe', ...(holdFd !== undefined ? [holdFd] : [])]);
      if (c === 'none') {
        tools.push(tar);
        return tar.child.stdin as Writable;
      }
      const un = tool(DECOMPRESS[c], ['pipe', 'pipe', 'pipe']);
      un.child.stdout?.pipe(tar.child.stdin as Writable);
      tools.push(un, tar);
      return un.child.stdin as Writable;
    };
    for await (const raw of input) {
      const chunk = typeof raw === 'string' ? Buffer.from(raw) : raw;
      onChunk(chunk);
      if (sink === undefined) {
        head = Buffer.concat([head, chunk]);
        if (head.length < 6) continue;
        sink = open();
        await writeAll(sink, head);
        continue;
      }
      await writeAll(sink, chunk);
    }
    if (head.length === 0) throw new ImageError('TRANSFER_EMPTY', 'The archive is empty (no bytes were read)');
    if (sink === undefined) {
      sink = open(); // fewer than 6 bytes in all: tar says what is wrong with them
      await writeAll(sink, head);
    }
    sink.end();
    await checked(tools, 'Unpacking the archive failed');
  } catch (err) {
    throw await failure(tools, err);
  }
}

/**
 * Packs directory `dir` as a tar stream, compressed as asked, into `out` (a file descriptor);
 * `onChunk` sees the uncompressed tar bytes as they pass.
 */
export async function createTar(dir: string, compression: Compression, out: number, onChunk: (chunk: Buffer) => void): Promise<void> {
  const tools: Tool[] = [];
  try {
    const tar = tool(['tar', '--create', '--file=-', `--directory=${dir}`, '--sparse', ...TAR_KEEP, '.'], ['ignore', 'pipe', 'pipe']);
    tools.push(tar);
    let sink: Writable;
    if (compression === 'none') {
      sink = createWriteStream('', { fd: out, autoClose: false });
    } else {
      const z = tool(COMPRESS[compression], ['pipe', out, 'pipe']);
      tools.push(z);
      sink = z.child.stdin as Writable;
    }
    for await (const chunk of tar.child.stdout as AsyncIterable<Buffer>) {
      onChunk(chunk);
      await writeAll(sink, chunk);
    }
    await new Promise<void>((resolve, reject) => {
      sink.once('error', reject);
      sink.end(() => resolve());
    });
    await checked(tools, 'Packing the image failed');
  } catch (err) {
    throw await failure(tools, err);
  }
}
