// The notify-socket sweep of src/runtime/leftovers.ts with real processes and real sockets: a
// socket NAME.PID goes when PID is gone or is a process that started after the socket was made (a
// reused PID); a live launcher's stays, and so do files that are not sockets.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, renameSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import { processStartMs, sweepNotifySockets } from '../../../src/runtime/leftovers.js';

let dir: string | undefined;
const servers: Server[] = [];

afterEach(() => {
  for (const s of servers.splice(0)) s.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

function socketAt(path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    servers.push(s);
    s.once('error', reject);
    s.listen(path, () => resolve());
  });
}

test('a notify socket goes when its launcher PID is gone or was reused; a live launcher\'s stays', async () => {
  dir = mkdtempSync(join(tmpdir(), 'nspawn-ts-notify-'));
  // this process: started before its socket
  await socketAt(join(dir, `live.${process.pid}`));
  // a PID no process has (beyond pid_max on any default system)
  await socketAt(join(dir, 'gone.4194305'));
  // a socket older than the process that now has its PID: made, aged, then named after a new process
  await socketAt(join(dir, 'reused.tmp'));
  const old = Date.now() / 1000 - 30;
  utimesSync(join(dir, 'reused.tmp'), old, old);
  const child = spawn('sleep', ['30']);
  try {
    const pid = child.pid as number;
    expect(processStartMs(pid)).toBeGreaterThan(old * 1000 + 1000);
    renameSync(join(dir, 'reused.tmp'), join(dir, `reused.${pid}`));
    // not a socket: never ours to remove
    writeFileSync(join(dir, 'file.4194305'), '');
    expect(sweepNotifySockets(dir).sort()).toEqual(['gone.4194305', `reused.${pid}`]);
    expect(readdirSync(dir).sort()).toEqual(['file.4194305', `live.${process.pid}`]);
    // nothing more on a second pass
    expect(sweepNotifySockets(dir)).toEqual([]);
  } finally {
    child.kill('SIGKILL');
  }
});

test('a missing notify directory is nothing to sweep', () => {
  expect(sweepNotifySockets('/nonexistent/nspawn-ts-notify')).toEqual([]);
});
