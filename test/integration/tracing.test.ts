// OpenTelemetry across the programs: with only the standard OTEL_* variables set, a request from
// an app through its sidecar to the store produces one trace whose spans connect app → sidecar
// (a client span per attempt) → store (a server span per gRPC call), received by a small OTLP
// receiver here. Real processes: `ballast store` and `ballast sidecar`.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { loadProtos } from '../../store/api/server.ts';
import { startSidecar } from '../support/sidecar-procs.ts';
import { StoreCluster, freePort } from '../support/store-cluster.ts';

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: Array<{ key: string; value: Record<string, unknown> }>;
}
interface OtlpBatch {
  resourceSpans: Array<{
    resource: { attributes: Array<{ key: string; value: { stringValue?: string } }> };
    scopeSpans: Array<{ spans: OtlpSpan[] }>;
  }>;
}

describe('traces: app → sidecar → store', { timeout: 120_000 }, () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  it('one trace, its spans connected, from the standard OTEL_* environment alone', async (t) => {
    const batches: OtlpBatch[] = [];
    const paths: string[] = [];
    const receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => {
        body += c.toString();
      });
      req.on('end', () => {
        paths.push(req.url ?? '');
        if (req.url === '/v1/traces') batches.push(JSON.parse(body) as OtlpBatch);
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    cleanups.push(() => {
      receiver.close();
    });
    const env = {
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${(receiver.address() as { port: number }).port}`,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_BSP_SCHEDULE_DELAY: '100',
    };
    const store = await StoreCluster.start(1, { env });
    cleanups.push(() => store.shutdown());
    const [port, admin] = [await freePort(), await freePort()];
    const sc = await startSidecar(
      { upstreams: [{ name: 'etcd', listen: `127.0.0.1:${port}`, protocol: 'http2', endpoints: [store.endpoints()] }] },
      admin,
      env,
    );
    cleanups.push(() => sc.proc.stop());

    // The app: a Put with its own span's context, as an instrumented app sends it.
    const appTrace = '0af7651916cd43dd8448eb211c80319c';
    const appSpan = 'b7ad6b7169203331';
    const KV = (loadProtos()['etcdserverpb'] as Record<string, grpc.ServiceClientConstructor>)['KV'] as grpc.ServiceClientConstructor;
    const kv = new KV(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as {
      Put(r: object, md: grpc.Metadata, cb: (e: Error | null) => void): void;
      close(): void;
    };
    const md = new grpc.Metadata();
    md.set('traceparent', `00-${appTrace}-${appSpan}-01`);
    await new Promise<void>((res, rej) =>
      kv.Put({ key: Buffer.from('traced'), value: Buffer.from('yes') }, md, (e) => (e ? rej(e) : res())),
    );
    kv.close();

    const spansOf = () =>
      batches
        .flatMap((b) =>
          b.resourceSpans.flatMap((r) => {
            const service = r.resource.attributes.find((a) => a.key === 'service.name')?.value.stringValue ?? '';
            return r.scopeSpans.flatMap((s) => s.spans.map((x) => ({ ...x, service })));
          }),
        )
        .filter((s) => s.traceId === appTrace);
    const end = Date.now() + 15_000;
    while (
      Date.now() < end &&
      !(spansOf().some((s) => s.service === 'ballast-store') && spansOf().some((s) => s.service === 'ballast-sidecar'))
    )
      await new Promise((r) => setTimeout(r, 100));
    const spans = spansOf();
    t.diagnostic(
      `receiver: ${[...new Set(paths)].join(', ')}; spans of the trace: ${spans.map((x) => `${x.service} ${x.name}`).join('; ')}`,
    );
    const sidecarSpan = spans.find((s) => s.service === 'ballast-sidecar');
    const storeSpan = spans.find((s) => s.service === 'ballast-store');
    assert.ok(sidecarSpan, `a sidecar span in the app's trace (receiver got ${paths.join(', ')})`);
    assert.ok(storeSpan, "a store span in the app's trace");
    assert.equal(sidecarSpan.parentSpanId, appSpan, "the sidecar's attempt hangs under the app's span");
    assert.equal(storeSpan.parentSpanId, sidecarSpan.spanId, "the store's server span hangs under the sidecar's attempt");
    assert.equal(storeSpan.name, 'etcdserverpb.KV/Put');
    assert.equal(storeSpan.kind, 2, 'SERVER');
    assert.equal(sidecarSpan.kind, 3, 'CLIENT');
    assert.equal(storeSpan.attributes.find((a) => a.key === 'rpc.grpc.status_code')?.value['intValue'], 0);
  });
});
