// The sidecar against peer conformance suites nobody here wrote, with the reference's result
// from the same run beside it:
// - grpc-go's interop client (google.golang.org/grpc/interop/client v1.85.0) against grpc-go's
//   interop server, directly and through `ballast sidecar` with default policies, with retries and
//   hedging on, and with one of two endpoints down: every plaintext test case that passes directly
//   passes through the sidecar, in every configuration.
// - h2spec (github.com/summerwind/h2spec v2.2.1) against the sidecar's listener and against a bare
//   node:http2 server: the sidecar fails nothing that bare Node passes.
// The tools are built from their Go modules by test/conformance/build (make conformance).
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { cacheDir } from '../../cluster/toolchain.ts';
import { startFaultUpstreams, type FaultUpstream } from '../support/fault-upstream.ts';
import { type Proc, startSidecar } from '../support/sidecar-procs.ts';
import { interopCase, interopCases, interopDir } from '../support/interop-cases.ts';
import { freePort } from '../support/store-cluster.ts';

const run = promisify(execFile);
const interop = interopDir;
const h2spec = join(cacheDir(), 'h2spec-v2.2.1', 'h2spec');

const procs: ChildProcess[] = [];
process.once('exit', () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
});

describe('peer conformance: grpc-go interop and h2spec', { timeout: 600_000 }, () => {
  const ports = { a: 0, b: 0 };
  let sidecar: { proc: Proc } | undefined;
  const listen = { plain: 0, hedged: 0, onedown: 0, h2spec: 0 };
  let echo: FaultUpstream[] = [];

  before(async () => {
    assert.ok(existsSync(join(interop, 'client')) && existsSync(h2spec), 'the conformance tools are built (make conformance)');
    for (const k of ['a', 'b'] as const) {
      ports[k] = await freePort();
      const p = spawn(join(interop, 'server'), [`-port=${ports[k]}`], { stdio: 'ignore' });
      procs.push(p);
    }
    echo = await startFaultUpstreams(['a']);
    for (const k of Object.keys(listen) as Array<keyof typeof listen>) listen[k] = await freePort();
    const dead = `127.0.0.1:${await freePort()}`;
    sidecar = await startSidecar(
      {
        upstreams: [
          { name: 'plain', listen: `127.0.0.1:${listen.plain}`, protocol: 'http2', endpoints: [`127.0.0.1:${ports.a}`] },
          {
            name: 'hedged',
            listen: `127.0.0.1:${listen.hedged}`,
            protocol: 'http2',
            endpoints: [`127.0.0.1:${ports.a}`, `127.0.0.1:${ports.b}`],
            policy: { retries: { maxAttempts: 3, idempotentPaths: ['/grpc.testing.TestService/'] }, hedge: { enabled: true, delayMs: 5 } },
          },
          { name: 'onedown', listen: `127.0.0.1:${listen.onedown}`, protocol: 'http2', endpoints: [`127.0.0.1:${ports.a}`, dead] },
          { name: 'h2spec', listen: `127.0.0.1:${listen.h2spec}`, protocol: 'auto', endpoints: [echo[0]!.address] },
        ],
      },
      await freePort(),
    );
  });
  after(async () => {
    await sidecar?.proc.stop();
    for (const p of procs) p.kill('SIGKILL');
    for (const u of echo) await u.stop();
  });

  it('grpc-go interop: every plaintext case passes through the sidecar (defaults; retries and hedging; one endpoint of two down) as it does directly', async (t) => {
    const rows: string[] = ['| test case | direct | sidecar | retries + hedging | one endpoint down |', '|---|---|---|---|---|'];
    const failed: string[] = [];
    for (const test of interopCases) {
      const direct = await interopCase(ports.a, test);
      const via = [await interopCase(listen.plain, test), await interopCase(listen.hedged, test), await interopCase(listen.onedown, test)];
      rows.push(`| ${test} | ${direct} | ${via.join(' | ')} |`);
      if (direct === 'pass')
        via.forEach((v, i) => v !== 'pass' && failed.push(`${test} (${['defaults', 'retries+hedging', 'one down'][i]}): ${v}`));
      else failed.push(`${test} fails directly: ${direct}`);
    }
    t.diagnostic(`\n${rows.join('\n')}`);
    assert.deepEqual(failed, []);
  });

  /** h2spec's verdict per test case (id → passed), from its JUnit report. */
  const h2specRun = async (port: number): Promise<{ passed: Set<string>; failed: Set<string>; summary: string }> => {
    const dir = mkdtempSync(join(tmpdir(), 'ballast-h2spec-'));
    const report = join(dir, 'report.xml');
    const r = await run(h2spec, ['-h', '127.0.0.1', '-p', String(port), '-o', '2', '-j', report], { timeout: 300_000 }).catch(
      (e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }),
    );
    const xml = readFileSync(report, 'utf8');
    const passed = new Set<string>();
    const failed = new Set<string>();
    for (const suite of xml.matchAll(/<testsuite name="([^"]*)"[^>]*>([\s\S]*?)<\/testsuite>/g)) {
      for (const tc of (suite[2] ?? '').matchAll(/<testcase[^>]*? classname="([^"]*)"[^>]*?(?:\/>|>([\s\S]*?)<\/testcase>)/g)) {
        const id = `${suite[1]}: ${tc[1]}`;
        const body = tc[2] ?? '';
        if (/<skipped/.test(body)) continue;
        if (/<failure|<error/.test(body)) failed.add(id);
        else passed.add(id);
      }
    }
    return { passed, failed, summary: r.stdout.trim().split('\n').pop() ?? '' };
  };

  it("h2spec: the sidecar's listener fails nothing that a bare node:http2 server passes", async (t) => {
    const bare = http2.createServer((req, res) => {
      req.resume();
      req.on('end', () => res.end('ok'));
    });
    bare.on('sessionError', () => undefined);
    const barePort = await freePort();
    await new Promise<void>((r) => bare.listen(barePort, '127.0.0.1', () => r()));
    const node = await h2specRun(barePort);
    bare.close();
    const sc = await h2specRun(listen.h2spec);
    t.diagnostic(`h2spec, bare node:http2: ${node.summary}`);
    t.diagnostic(`h2spec, ballast sidecar: ${sc.summary}`);
    t.diagnostic(`failed by bare node:http2 (Node's own): ${[...node.failed].join('; ') || 'none'}`);
    assert.ok(node.passed.size > 100, `h2spec ran (${node.passed.size} passed on bare Node)`);
    assert.deepEqual(
      [...sc.failed].filter((id) => node.passed.has(id)),
      [],
      'nothing bare Node passes fails through the sidecar',
    );
  });
});
