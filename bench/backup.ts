/**
 * bench/backup: backing up and restoring a store of 1 GiB (each key written once, 64 KiB values),
 * Ballast next to Debian's etcd 3.4 (the anchor, bench/anchors/etcd-cluster), 3 members on
 * loopback each, in the same run:
 *   1. etcd: `etcdctl snapshot save` to a local file and `etcdctl snapshot restore` from it
 *      (etcd 3.4's etcdctl; etcdutl arrived in 3.5), with write p99 while the snapshot streams
 *   2. ballast: the same `etcdctl snapshot save` (a like-for-like number), `ballast backup save`
 *      into SeaweedFS's S3 gateway (streamed from a follower), `ballast backup restore` back
 *      into a data directory, with write p99 while the backup streams and the resident memory
 *      of the member streamed from
 *   3. write p99 with no backup running, on each system, the same load (bench/loadgen: 16
 *      clients, 256-byte puts)
 *
 *   node bench/backup.ts [--quick]   (--quick: 128 MiB)
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KvClient } from '../test/support/linearizability.ts';
import { startSeaweed } from '../test/support/seaweedfs.ts';
import { bin } from '../test/support/store-cluster.ts';
import { machine, root, rssBytes, table, tryRun, writeResult } from './lib.ts';
import { type System, etcdctl, putLoad, startBallast, startEtcd } from './systems.ts';

const quick = process.argv.includes('--quick');
const totalBytes = quick ? 128 * 2 ** 20 : 2 ** 30;
const valueBytes = 64 * 1024;
const MiB = 2 ** 20;
const loadMs = quick ? 8_000 : 15_000;

async function fill(sys: System): Promise<number> {
  const clients = sys.endpoints.map((ep) => new KvClient(ep, 30_000));
  const value = Buffer.alloc(valueBytes, 'v');
  const n = Math.ceil(totalBytes / valueBytes);
  const start = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 24 }, async (_, w) => {
      for (let i = next++; i < n; i = next++)
        await (clients[w % clients.length] as KvClient).call('Put', { key: Buffer.from(`bulk/${String(i).padStart(6, '0')}`), value });
    }),
  );
  for (const c of clients) c.close();
  return (performance.now() - start) / 1000;
}

/** Run a command to its end; seconds taken, and the peak RSS of `watch` meanwhile. */
function timed(
  cmd: string,
  args: string[],
  env: Record<string, string> = {},
  watch?: number,
): Promise<{ sec: number; peakRss: number; out: string }> {
  const start = performance.now();
  let peak = watch ? rssBytes(watch) : 0;
  const tick = watch
    ? setInterval(() => {
        peak = Math.max(peak, rssBytes(watch));
      }, 100)
    : undefined;
  return new Promise((resolve, reject) => {
    const p: ChildProcess = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let out = '';
    p.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
    });
    p.stderr?.on('data', (d: Buffer) => {
      out += d.toString();
    });
    p.on('exit', (code) => {
      if (tick) clearInterval(tick);
      if (code !== 0) reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${out}`));
      else resolve({ sec: (performance.now() - start) / 1000, peakRss: peak, out });
    });
  });
}

const sizeOf = (sys: System) =>
  Number(/"DBSize" : (\d+)/.exec(etcdctl([sys.endpoints[0] as string], ['endpoint', 'status', '-w', 'fields']))?.[1] ?? 0);
const mibps = (bytes: number, sec: number) => Math.round(bytes / MiB / sec);

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'ballast-bench-backup-'));
  const weed = await startSeaweed(join(work, 'weed'));
  await weed.createBucket('bench');
  const s3 = { AWS_ACCESS_KEY_ID: weed.accessKeyId, AWS_SECRET_ACCESS_KEY: weed.secretAccessKey };
  const s3Flags = [`--s3-endpoint=${weed.endpoint}`, '--s3-bucket=bench', '--s3-prefix=bench/'];
  const rows: Array<Record<string, string | number>> = [];
  const loads: Array<Record<string, string | number>> = [];
  try {
    // The anchor.
    const etcd = await startEtcd();
    try {
      const fillSec = await fill(etcd);
      const db = sizeOf(etcd);
      const idle = await putLoad(etcd, loadMs);
      const file = join(work, 'etcd.db');
      const during = putLoad(etcd, loadMs);
      const save = await timed('etcdctl', [`--endpoints=${etcd.endpoints[1]}`, 'snapshot', 'save', file], { ETCDCTL_API: '3' });
      const busy = await during;
      const restore = await timed('etcdctl', ['snapshot', 'restore', file, `--data-dir=${join(work, 'etcd-restored')}`], {
        ETCDCTL_API: '3',
      });
      const bytes = statSync(file).size;
      rows.push({
        system: 'etcd 3.4 (anchor)',
        storeMiB: Math.round(db / MiB),
        fillSec: Math.round(fillSec),
        how: 'etcdctl snapshot save → file',
        saveSec: save.sec,
        saveMiBps: mibps(bytes, save.sec),
        restoreSec: restore.sec,
        restoreMiBps: mibps(bytes, restore.sec),
        sourcePeakRssMiB: '',
      });
      loads.push({
        system: 'etcd 3.4 (anchor)',
        idleP99ms: idle.p99ms,
        duringBackupP99ms: busy.p99ms,
        idleOpsPerSec: Math.round(idle.opsPerSec),
        duringOpsPerSec: Math.round(busy.opsPerSec),
        errors: idle.errors + busy.errors,
      });
    } finally {
      await etcd.stop();
    }
    // Ballast.
    const ballast = await startBallast();
    try {
      const fillSec = await fill(ballast);
      const db = sizeOf(ballast);
      const idle = await putLoad(ballast, loadMs);
      const file = join(work, 'ballast.db');
      const save = await timed('etcdctl', [`--endpoints=${ballast.endpoints[1]}`, 'snapshot', 'save', file], { ETCDCTL_API: '3' });
      const restore = await timed(bin, ['store', 'restore', file, `--data-dir=${join(work, 'ballast-restored')}`]);
      const bytes = statSync(file).size;
      rows.push({
        system: 'ballast',
        storeMiB: Math.round(db / MiB),
        fillSec: Math.round(fillSec),
        how: 'etcdctl snapshot save → file; ballast store restore',
        saveSec: save.sec,
        saveMiBps: mibps(bytes, save.sec),
        restoreSec: restore.sec,
        restoreMiBps: mibps(bytes, restore.sec),
        sourcePeakRssMiB: '',
      });
      // To object storage, streamed from a follower, under the write load.
      const lead = ballast.leaderEndpoint();
      const follower = ballast.endpoints.find((e) => e !== lead) as string;
      const followerPid = ballast.pids()[ballast.endpoints.indexOf(follower)] as number;
      const before = rssBytes(followerPid);
      const during = putLoad(ballast, loadMs);
      const up = await timed(bin, ['backup', 'save', ...s3Flags, `--endpoints=${follower}`, '--name=bench'], s3, followerPid);
      const busy = await during;
      const m = JSON.parse(up.out.trim().split('\n').pop() as string) as { size: number };
      const down = await timed(bin, ['backup', 'restore', 'bench', ...s3Flags, `--data-dir=${join(work, 'ballast-from-s3')}`], s3);
      rows.push({
        system: 'ballast',
        storeMiB: Math.round(db / MiB),
        fillSec: Math.round(fillSec),
        how: 'ballast backup save → S3 (SeaweedFS); ballast backup restore',
        saveSec: up.sec,
        saveMiBps: mibps(m.size, up.sec),
        restoreSec: down.sec,
        restoreMiBps: mibps(m.size, down.sec),
        sourcePeakRssMiB: `${Math.round(before / MiB)} → ${Math.round(up.peakRss / MiB)}`,
      });
      loads.push({
        system: 'ballast',
        idleP99ms: idle.p99ms,
        duringBackupP99ms: busy.p99ms,
        idleOpsPerSec: Math.round(idle.opsPerSec),
        duringOpsPerSec: Math.round(busy.opsPerSec),
        errors: idle.errors + busy.errors,
      });
    } finally {
      await ballast.stop();
    }
  } finally {
    await weed.stop();
    rmSync(work, { recursive: true, force: true });
  }
  console.log(table(rows, 'backup and restore of a 1 GiB store'));
  console.log();
  console.log(table(loads, `write p99 (16 clients, 256-byte puts, ${loadMs / 1000} s) without and during a backup`));
  const path = writeResult('backup', {
    machine: machine(),
    quick,
    storeBytes: totalBytes,
    valueBytes,
    versions: {
      etcd: tryRun('etcd', ['--version']).split('\n')[0],
      etcdctl: tryRun('etcdctl', ['version']).split('\n')[0],
      seaweedfs:
        /github\.com\/seaweedfs\/seaweedfs (\S+)/.exec(readFileSync(`${root}cluster/go/seaweedfs/go.mod`, 'utf8'))?.[1] ?? 'unknown',
    },
    backupAndRestore: rows,
    writeLatency: loads,
  });
  console.log(`\nwrote ${path}`);
}

await main();
