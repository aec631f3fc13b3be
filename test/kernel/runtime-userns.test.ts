// User namespaces: -U / --private-users= maps IDs as asked, --private-users-chown shifts the
// root's ownership (and back), the picked range is locked while the container runs.
import { existsSync, lchownSync, lstatSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { describe, expect, beforeAll } from 'vitest';
import { ktest } from '../helpers/kernel.js';
import { busyboxRoot, copyRoot } from '../helpers/rootfs.js';
import { ephemeralLayers, exited, machineLeader, machineRecords, nspawn, startNspawn } from '../helpers/nspawn.js';
import { runOk, waitFor } from '../helpers/exec.js';
import { pickCandidateFromName, UID_LOCK_DIR } from '../../src/runtime/namespaces.js';

/** machine names carry this run's ID: cgroups are host-wide, and other test runs may use the same names */
const RUN = process.pid.toString(36);

let root: string;
beforeAll(async () => {
  root = await busyboxRoot();
}, 120_000);

function mapOf(out: string, file: 'uid' | 'gid'): string {
  const m = new RegExp(`${file}_map:\\s*(\\d+)\\s+(\\d+)\\s+(\\d+)`).exec(out);
  return m ? `${m[1]} ${m[2]} ${m[3]}` : '';
}

/** path → owner of every entry of a tree */
function owners(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (p: string): void => {
    const st = lstatSync(p);
    out.set(p, `${st.uid}:${st.gid} ${st.mode.toString(8)}`);
    if (st.isDirectory()) for (const e of readdirSync(p)) walk(`${p}/${e}`);
  };
  walk(dir);
  return out;
}

const PROBE = 'printf "uid_map: "; cat /proc/self/uid_map; printf "gid_map: "; cat /proc/self/gid_map; id -u; readlink /proc/self/ns/user';

describe('user namespaces', () => {
  ktest('--private-users=identity maps 0..65535 onto itself, in a user namespace of its own', async () => {
    const r = await nspawn(['-q', '-D', root, '--private-users=identity', '/bin/sh', '-c', PROBE]);
    expect(r.code).toBe(0);
    expect(mapOf(r.stdout, 'uid')).toBe('0 0 65536');
    expect(mapOf(r.stdout, 'gid')).toBe('0 0 65536');
    expect(r.stdout).not.toContain((await import('node:fs')).readlinkSync('/proc/self/ns/user'));
  });

  ktest('--private-users=UID:N maps N IDs from UID; files outside the range show as nobody', async () => {
    const r = await nspawn(['-q', '-D', root, '--private-users=1000000:65536', '/bin/sh', '-c', `${PROBE}; ls -ln /etc/passwd; touch /tmp/t && ls -ln /tmp/t`]);
    expect(r.code).toBe(0);
    expect(mapOf(r.stdout, 'uid')).toBe('0 1000000 65536');
    expect(r.stdout).toMatch(/\n0\n/); // id -u: root inside
    expect(r.stdout).toMatch(/65534\s+65534\s+\d+ .* \/etc\/passwd/); // host root is unmapped
    expect(r.stdout).toMatch(/ 0\s+0\s+0 .* \/tmp\/t/); // the container's tmpfs belongs to its root
  });

  ktest('-U picks a free range (the name\'s hash first), shifts ownership, locks the range while running', async () => {
    const copy = await copyRoot(root);
    try {
      const name = `userns-pick-${RUN}`;
      const expected = pickCandidateFromName(name);
      const c = startNspawn(['-q', '-D', copy.dir, '-M', name, '-U', '/bin/sh', '-c', `${PROBE}; ls -ln /etc/passwd /home; sleep 1`]);
      await waitFor(() => machineLeader(name) ?? (c.exitCode !== null ? Promise.reject(new Error(c.output())) : undefined), 'the container to start');
      expect(existsSync(`${UID_LOCK_DIR}/${expected}`)).toBe(true);
      expect(await exited(c)).toEqual({ code: 0, signal: null });
      const out = c.output();
      expect(mapOf(out, 'uid')).toBe(`0 ${expected} 65536`);
      expect(out).toMatch(/ 0\s+0\s+\d+ .* \/etc\/passwd/);
      expect(out).toMatch(/1000\s+1000\s+\d+ .* test/);
      // on the host, the tree now belongs to the range
      expect(statSync(`${copy.dir}/etc/passwd`).uid).toBe(expected);
      expect(statSync(`${copy.dir}/home/test`).uid).toBe(expected + 1000);
      expect(lstatSync(`${copy.dir}/bin/sh`).uid).toBe(expected);
      expect(existsSync(`${UID_LOCK_DIR}/${expected}`)).toBe(false);
      // --private-users=0 --private-users-chown shifts it back
      const back = await nspawn(['-q', '-D', copy.dir, '-M', name, '--private-users=0', '--private-users-chown', '/bin/true']);
      expect(back.code).toBe(0);
      expect(statSync(`${copy.dir}/etc/passwd`).uid).toBe(0);
      expect(statSync(`${copy.dir}/home/test`).uid).toBe(1000);
      expect(statSync(`${copy.dir}/home/test`).gid).toBe(1000);
    } finally {
      copy.remove();
    }
    expect(machineRecords()).toEqual([]);
  });

  ktest('--private-users=yes takes the range from the owner of the root directory', async () => {
    const copy = await copyRoot(root);
    try {
      const base = 0x1f0000 * 16; // 64K-aligned, as a shifted tree is
      const shift = await nspawn(['-q', '-D', copy.dir, `--private-users=${base}`, '--private-users-chown', '/bin/true']);
      expect(shift.code).toBe(0);
      expect(statSync(copy.dir).uid).toBe(base);
      const r = await nspawn(['-q', '-D', copy.dir, '--private-users=yes', '/bin/sh', '-c', `${PROBE}; ls -ln /etc/passwd`]);
      expect(r.code).toBe(0);
      expect(mapOf(r.stdout, 'uid')).toBe(`0 ${base} 65536`);
      expect(r.stdout).toMatch(/ 0\s+0\s+\d+ .* \/etc\/passwd/);
    } finally {
      copy.remove();
    }
  });

  ktest('set-ID bits survive the ownership shift', async () => {
    const copy = await copyRoot(root);
    try {
      const { chmodSync, writeFileSync } = await import('node:fs');
      writeFileSync(`${copy.dir}/bin/suid-file`, '');
      chmodSync(`${copy.dir}/bin/suid-file`, 0o4755);
      const r = await nspawn(['-q', '-D', copy.dir, '--private-users=2000000', '--private-users-chown', '/bin/true']);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const st = statSync(`${copy.dir}/bin/suid-file`);
      expect(st.uid).toBe(2000000);
      expect(st.mode & 0o7777).toBe(0o4755);
    } finally {
      copy.remove();
    }
  });

  ktest('with a user namespace, -u, --as-pid2 and a private network still work', async () => {
    const r = await nspawn(['-q', '-D', root, '--private-users=identity', '--private-network', '-a', '-u', 'test', '/bin/sh', '-c',
      'echo $$; id -u; cat /proc/1/comm; ls /sys/class/net']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('2\n1000\n(sd-stubinit)\nlo\n');
  });

  ktest('the container\'s root cannot do what needs the host\'s root: no device nodes, no host mounts', async () => {
    const r = await nspawn(['-q', '-D', root, '--private-users=1000000:65536', '/bin/sh', '-c',
      'mknod /tmp/null c 1 3 && echo made; echo x > /proc/sys/kernel/hostname && echo wrote; mount -t tmpfs none /mnt && echo mounted']);
    expect(r.stdout).not.toContain('made');
    expect(r.stdout).not.toContain('wrote');
    // mounting inside its own mount namespace is allowed to the user namespace's root
    expect(r.stdout).toContain('mounted');
  });

  ktest('-U -x runs on a tree owned by host root: the overlay\'s lower layer is ID-mapped into the range, the tree is left as it was', async () => {
    const copy = await copyRoot(root);
    try {
      // (IDs past 65535 cannot be mapped; a test that wrote the shared root may have left one)
      lchownSync(`${copy.dir}/etc/resolv.conf`, 0, 0);
      const before = owners(copy.dir);
      const script = `${PROBE}; stat -c "%u %g" /bin/busybox /etc/passwd /; echo more >> /etc/hostname && touch /root/new && stat -c "new %u %g" /root/new; tail -1 /etc/hostname`;
      const r = await nspawn(['-q', '-D', copy.dir, '-M', `ux-${RUN}`, '-x', '-U', '/bin/sh', '-c', script]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const [shift] = mapOf(r.stdout, 'uid').split(' ').slice(1).map(Number);
      expect(shift).toBeGreaterThanOrEqual(0x80000);
      expect(mapOf(r.stdout, 'uid')).toBe(`0 ${shift} 65536`);
      expect(r.stdout).toContain('\n0 0\n0 0\n0 0\n'); // the tree's files are root's inside
      expect(r.stdout).toContain('new 0 0\nmore\n');
      // on the host: not one owner changed, nothing written
      expect(owners(copy.dir)).toEqual(before);
      expect(existsSync(`${copy.dir}/root/new`)).toBe(false);
      expect(ephemeralLayers()).toEqual([]);
      expect(machineRecords()).toEqual([]);
      // so does --private-users-ownership=map with -x, and a fixed range
      const m = await nspawn(['-q', '-D', copy.dir, '-x', '--private-users=1000000:65536', '--private-users-ownership=map', '/bin/sh', '-c', `${PROBE}; stat -c "%u" /etc/passwd`]);
      expect(m.stderr).toBe('');
      expect(mapOf(m.stdout, 'uid')).toBe('0 1000000 65536');
      expect(m.stdout).toMatch(/\n0\n$/);
      expect(owners(copy.dir)).toEqual(before);
    } finally {
      copy.remove();
    }
  });

  ktest('-U -x on a tree already owned by the range uses it as it is (no ID mapping)', async () => {
    const copy = await copyRoot(root);
    try {
      const shifted = await nspawn(['-q', '-D', copy.dir, '--private-users=589824', '--private-users-chown', '/bin/true']);
      expect(shifted.code).toBe(0);
      expect(statSync(copy.dir).uid).toBe(0x90000);
      const r = await nspawn(['-q', '-D', copy.dir, '-x', '-U', '/bin/sh', '-c', `${PROBE}; stat -c "%u" /etc/passwd; grep " / / " /proc/self/mountinfo`]);
      expect(r.stderr).toBe('');
      expect(mapOf(r.stdout, 'uid')).toBe(`0 ${0x90000} 65536`);
      expect(r.stdout).toMatch(/\n0\n/);
      expect(r.stdout).not.toMatch(/lowerdir=[^,]*\/lower,/);
    } finally {
      copy.remove();
    }
  });

  ktest('-U -x where the tree\'s file system cannot be ID-mapped (ramfs): a copy with shifted owners is the lower layer for the run', async () => {
    const ram = mkdtempSync('/var/tmp/nspawn-ts-ramfs-');
    await runOk('mount', ['-t', 'ramfs', '-o', 'mode=755', 'ramfs', ram]);
    try {
      const copy = await copyRoot(root, ram);
      lchownSync(`${copy.dir}/etc/resolv.conf`, 0, 0);
      const before = owners(copy.dir);
      const r = await nspawn(['-D', copy.dir, '-M', `uxr-${RUN}`, '-x', '-U', '--resolv-conf=off', '/bin/sh', '-c',
        `${PROBE}; stat -c "%u %g" /bin/busybox /home/test; touch /root/new && stat -c "new %u" /root/new; grep " / / " /proc/self/mountinfo`]);
      expect(r.stderr).toMatch(/the ramfs file system of .* cannot be ID-mapped: copying the tree for this run, its owners shifted to \d+/);
      expect(r.code).toBe(0);
      const shift = Number(mapOf(r.stdout, 'uid').split(' ')[1]);
      expect(shift).toBeGreaterThanOrEqual(0x80000);
      expect(r.stdout).toContain('\n0 0\n1000 1000\nnew 0\n');
      expect(r.stdout).toMatch(/ overlay .*lowerdir=[^,]*\/copy,/);
      expect(owners(copy.dir)).toEqual(before);
      expect(ephemeralLayers()).toEqual([]);
    } finally {
      await runOk('umount', [ram]);
      rmSync(ram, { recursive: true, force: true });
    }
  });
});
