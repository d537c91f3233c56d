/**
 * bench/pitr: point-in-time recovery under a steady write load (bench/loadgen: 16 clients,
 * 256-byte puts), 3 members on loopback, SeaweedFS's S3 gateway as the archive:
 *   1. the anchor, Debian's etcd 3.4 (bench/anchors/etcd-cluster) under the same load: its write
 *      p99 (etcd has no continuous archive: its recovery point is the last snapshot)
 *   2. ballast without an archiver, then with `ballast backup archive` at --segment-seconds 5
 *      (the default) and 1: write p99 and throughput (what archiving costs the write path), and
 *      the recovery point objective, sampled every 100 ms: how long ago the oldest revision not yet
 *      in the archive (wal/progress.json) was committed (the cluster's revision is read every
 *      50 ms to date revisions; the same reads run in the phase without an archiver)
 *   3. the point-in-time restore of everything archived: time and revisions replayed per second
 *
 *   node bench/pitr.ts [--quick]   (--quick: 8 s loads)
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { KvClient } from '../test/support/linearizability.ts';
import { startSeaweed } from '../test/support/seaweedfs.ts';
import { bin } from '../test/support/store-cluster.ts';
import { machine, percentile, root, table, tryRun, writeResult } from './lib.ts';
import { type System, etcdctl, putLoad, startBallast, startEtcd } from './systems.ts';

const quick = process.argv.includes('--quick');
const loadMs = quick ? 8_000 : 20_000;

const revisionOf = (sys: System) =>
  Number(/"revision":(\d+)/.exec(etcdctl([sys.endpoints[0] as string], ['endpoint', 'status', '-w', 'json'], 5_000))?.[1] ?? 0);

/**
 * Date revisions while a load runs: the cluster's revision every 50 ms (a Range over gRPC), and
 * every 100 ms `sample()` (how far the archive reaches) turned into how long ago the oldest
 * revision past it appeared. Runs in every ballast phase, archiving or not, so each costs the same.
 */
function recoveryPoint(sys: System, sample: () => Promise<number | undefined>): { stop(): Promise<number[]> } {
  const kv = new KvClient(sys.endpoints[0] as string, 5_000);
  const seen: Array<{ t: number; rev: number }> = [];
  const rpo: number[] = [];
  let running = true;
  const poll = (async () => {
    while (running) {
      const r = await kv.call('Range', { key: Buffer.from('rpo-probe') }).catch(() => undefined);
      if (r) seen.push({ t: Date.now(), rev: Number((r['header'] as { revision: string }).revision) });
      await new Promise((res) => setTimeout(res, 50));
    }
  })();
  const sampler = (async () => {
    await new Promise((res) => setTimeout(res, 2_000));
    while (running) {
      const archived = await sample();
      const now = Date.now();
      if (archived !== undefined) {
        const first = seen.find((x) => x.rev > archived);
        rpo.push(first ? now - first.t : 0);
      }
      await new Promise((res) => setTimeout(res, 100));
    }
  })();
  return {
    async stop() {
      running = false;
      await Promise.all([poll, sampler]);
      kv.close();
      return rpo.sort((a, b) => a - b);
    },
  };
}

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), 'ballast-bench-pitr-'));
  const weed = await startSeaweed(join(work, 'weed'));
  await weed.createBucket('bench');
  const env = { ...process.env, AWS_ACCESS_KEY_ID: weed.accessKeyId, AWS_SECRET_ACCESS_KEY: weed.secretAccessKey };
  const progress = async (prefix: string): Promise<{ revision: number }> => {
    try {
      return JSON.parse(
        await (await weed.s3.send(new GetObjectCommand({ Bucket: 'bench', Key: `${prefix}wal/progress.json` }))).Body!.transformToString(),
      ) as { revision: number };
    } catch {
      return { revision: 0 };
    }
  };
  const rows: Array<Record<string, string | number>> = [];
  const restores: Array<Record<string, string | number>> = [];
  try {
    const etcd = await startEtcd();
    try {
      const l = await putLoad(etcd, loadMs);
      rows.push({
        system: 'etcd 3.4 (anchor)',
        archive: 'none (snapshots only)',
        opsPerSec: Math.round(l.opsPerSec),
        p50ms: l.p50ms,
        p99ms: l.p99ms,
        rpoP50ms: '',
        rpoP99ms: '',
        rpoMaxMs: '',
        errors: l.errors,
      });
    } finally {
      await etcd.stop();
    }
    const ballast = await startBallast();
    let archiver: ChildProcess | undefined;
    try {
      const idle = recoveryPoint(ballast, async () => {
        await progress('none/');
        return undefined;
      });
      const l = await putLoad(ballast, loadMs);
      await idle.stop();
      rows.push({
        system: 'ballast',
        archive: 'none',
        opsPerSec: Math.round(l.opsPerSec),
        p50ms: l.p50ms,
        p99ms: l.p99ms,
        rpoP50ms: '',
        rpoP99ms: '',
        rpoMaxMs: '',
        errors: l.errors,
      });
      for (const seconds of [5, 1]) {
        const prefix = `seg${seconds}/`;
        const s3Flags = [`--s3-endpoint=${weed.endpoint}`, '--s3-bucket=bench', `--s3-prefix=${prefix}`];
        const base = spawnSync(bin, ['backup', 'save', ...s3Flags, `--endpoints=${ballast.endpoints.join(',')}`, '--name=base'], {
          encoding: 'utf8',
          env,
        });
        if (base.status !== 0) throw new Error(base.stderr);
        archiver = spawn(
          bin,
          [
            'backup',
            'archive',
            ...s3Flags,
            `--endpoints=${ballast.endpoints.join(',')}`,
            `--segment-seconds=${seconds}`,
            '--log-level=warn',
          ],
          { env, stdio: ['ignore', 'inherit', 'inherit'] },
        );
        await new Promise((r) => setTimeout(r, 1500));
        const rp = recoveryPoint(ballast, async () => (await progress(prefix)).revision);
        const busy = await putLoad(ballast, loadMs);
        const rpo = await rp.stop();
        rows.push({
          system: 'ballast',
          archive: `archiver, segment ${seconds} s`,
          opsPerSec: Math.round(busy.opsPerSec),
          p50ms: busy.p50ms,
          p99ms: busy.p99ms,
          rpoP50ms: Math.round(percentile(rpo, 50)),
          rpoP99ms: Math.round(percentile(rpo, 99)),
          rpoMaxMs: Math.round(rpo[rpo.length - 1] ?? 0),
          errors: busy.errors,
        });
        const end = revisionOf(ballast);
        for (let i = 0; i < 100; i++) {
          if ((await progress(prefix)).revision >= end) break;
          await new Promise((r) => setTimeout(r, 200));
        }
        archiver.kill('SIGTERM');
        await new Promise((r) => archiver?.once('exit', r));
        archiver = undefined;
        const baseRev = (JSON.parse(base.stdout) as { revision: number }).revision;
        const start = performance.now();
        const r = spawnSync(
          bin,
          ['backup', 'restore', `--to-revision=${end}`, ...s3Flags, `--data-dir=${join(work, `restored-${seconds}`)}`],
          { encoding: 'utf8', env },
        );
        const sec = (performance.now() - start) / 1000;
        if (r.status !== 0) throw new Error(r.stderr);
        const segments = Number(/replaying (\d+) segment/.exec(r.stdout)?.[1] ?? 0);
        restores.push({
          archive: `segment ${seconds} s`,
          baseRevision: baseRev,
          toRevision: end,
          revisionsReplayed: end - baseRev,
          segments,
          restoreSec: Math.round(sec * 10) / 10,
          revisionsPerSec: Math.round((end - baseRev) / sec),
        });
      }
    } finally {
      archiver?.kill('SIGKILL');
      await ballast.stop();
    }
  } finally {
    await weed.stop();
    rmSync(work, { recursive: true, force: true });
  }
  console.log(table(rows, `writes (16 clients, 256-byte puts, ${loadMs / 1000} s) and the recovery point while archiving`));
  console.log();
  console.log(table(restores, 'point-in-time restore of everything archived (base backup + replay)'));
  const path = writeResult('pitr', {
    machine: machine(),
    quick,
    loadMs,
    versions: {
      etcd: tryRun('etcd', ['--version']).split('\n')[0],
      seaweedfs:
        /github\.com\/seaweedfs\/seaweedfs (\S+)/.exec(readFileSync(`${root}cluster/go/seaweedfs/go.mod`, 'utf8'))?.[1] ?? 'unknown',
    },
    writesAndRecoveryPoint: rows,
    restores,
  });
  console.log(`\nwrote ${path}`);
}

await main();
