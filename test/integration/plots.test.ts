// The pictures people look at: the chaos report's page (latency over time with the faults shaded,
// throughput, availability gaps) and a benchmark's page (each measure with the anchor and Ballast
// side by side), opened in a real browser (Debian's chromium, headless, in a network namespace of
// its own), screenshotted, and the screenshot read back: the plots are drawn (their series'
// colours are on the screen), not a blank or broken page.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { PNG } from 'pngjs';
import { comparisonFigures, page } from '../../bench/plots.ts';
import { SeededRandom } from '../../lib/random.ts';
import { type TimedOp, timeline } from '../chaos/checks.ts';
import { type ChaosReport, type Fault, chaosPage, faultColors } from '../chaos/report.ts';

const chromium = ['chromium', '/usr/bin/chromium'].find((c) => spawnSync(c, ['--version']).status === 0) ?? 'chromium';

/** A screenshot of a page, as pixels (RGBA rows). */
function screenshot(html: string, dir: string, name: string, size = '1200,1800'): PNG {
  const file = join(dir, `${name}.html`);
  const png = join(dir, `${name}.png`);
  writeFileSync(file, html);
  const r = spawnSync(
    'unshare',
    [
      '--net',
      chromium,
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--hide-scrollbars',
      '--no-first-run',
      `--user-data-dir=${join(dir, `profile-${name}`)}`,
      `--window-size=${size}`,
      `--screenshot=${png}`,
      `file://${file}`,
    ],
    { encoding: 'utf8', timeout: 120_000 },
  );
  assert.equal(r.status, 0, `chromium (${chromium}; \`make deps\` installs Debian's package): ${r.stderr.slice(-1500)}`);
  return PNG.sync.read(readFileSync(png));
}

/** A colour drawn at `alpha` over white, as #rrggbb. */
function tint(hex: string, alpha: number): string {
  return `#${[1, 3, 5]
    .map((i) =>
      Math.round(255 - alpha * (255 - parseInt(hex.slice(i, i + 2), 16)))
        .toString(16)
        .padStart(2, '0'),
    )
    .join('')}`;
}

/** How many pixels are near each colour (within `tolerance` per channel), and how many are not white. */
function colours(img: PNG, wanted: Record<string, string>, tolerance = 40): { inked: number; found: Record<string, number> } {
  const want = Object.entries(wanted).map(([name, hex]) => ({ name, rgb: [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)) }));
  const found: Record<string, number> = Object.fromEntries(want.map((w) => [w.name, 0]));
  let inked = 0;
  for (let i = 0; i < img.data.length; i += 4) {
    const px = [img.data[i] ?? 0, img.data[i + 1] ?? 0, img.data[i + 2] ?? 0];
    if (px.some((c) => c < 235)) inked++;
    for (const w of want) if (w.rgb.every((c, k) => Math.abs(c - (px[k] ?? 0)) <= tolerance)) found[w.name] = (found[w.name] ?? 0) + 1;
  }
  return { inked, found };
}

/** A 120 s run's report: two faults, latency and unknown outcomes up while each is on. */
function sampleReport(): ChaosReport {
  const rng = new SeededRandom(7);
  const faults: Fault[] = [
    { kind: 'kill-leader', target: 'm1', at: 20_000, healedAt: 32_000 },
    { kind: 'partition-majority', target: 'm2,m3', at: 60_000, healedAt: 75_000 },
  ];
  const during = (t: number) => faults.some((f) => t >= f.at && t < f.healedAt + 1500);
  const ops: TimedOp[] = [];
  for (let t = 0; t < 120_000; t += 7) {
    const op = ['put', 'get', 'cas', 'set add'][Math.floor(rng.next() * 4)] ?? 'get';
    const slow = during(t);
    const latency = (slow ? 40 : 2) * (0.5 + rng.next()) * (rng.next() < 0.01 ? 10 : 1);
    if (slow && rng.next() < 0.7) continue; // little gets through while the fault is on
    ops.push({ op, call: t, ret: t + latency, unknown: slow && rng.next() < 0.3 });
  }
  const writes = ops.filter((o) => !o.unknown && o.op !== 'get').map((o) => ({ call: o.call, ret: o.ret }));
  const kept = writes.filter((w) => !faults.some((f) => w.ret >= f.at + 500 && w.ret < f.at + 3000));
  return {
    target: 'ballast',
    seed: 7,
    durationMs: 120_000,
    members: ['m1', 'm2', 'm3'],
    operations: { 'put ok': 4000 },
    unknownCauses: {},
    faults,
    faultsByKind: { 'kill-leader': 1, 'partition-majority': 1 },
    availability: {},
    linearizable: true,
    lincheck: '',
    set: { ok: true, acked: 1, unknown: 0, final: 1, lost: [], unexpected: [], recovered: 0 },
    watch: { ok: true, watchers: 3, revisions: 1, problems: [] },
    lease: { ok: true, granted: 0, keptLive: 0, gone: 0, problems: [] },
    hashKV: { ok: true, revision: 1, hashes: {} },
    unhealthyAfterHeal: '',
    ok: true,
    timeline: timeline(ops, kept, 120_000),
  };
}

describe("pictures: the chaos report and the benchmarks' pages, drawn in a real browser", { timeout: 300_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'ballast-plots-'));
  after(() => (process.env['BALLAST_KEEP_PLOTS'] ? undefined : rmSync(dir, { recursive: true, force: true })));

  it("the chaos report's page: each operation's latency with the faults shaded, throughput, and the stretches with no write", (t) => {
    const report = sampleReport();
    assert.ok((report.timeline?.gaps.length ?? 0) >= 2, 'the sample has a write gap in each fault');
    const html = chaosPage(report);
    assert.equal((html.match(/<svg/g) ?? []).length >= 6, true, 'four latency plots, throughput and availability');
    const img = screenshot(html, dir, 'chaos', '1200,2200');
    // The lines' colours; the two faults' kinds in the legend, and shaded at 18% over white behind
    // the lines.
    const kill = faultColors['kill-leader'];
    const partition = faultColors['partition-majority'];
    const { inked, found } = colours(
      img,
      { p50: '#1f77b4', p99: '#d62728', writes: '#22aa77', 'kill-leader (legend)': kill, 'partition-majority (legend)': partition },
      12,
    );
    const shaded = colours(
      img,
      { 'kill-leader (shaded)': tint(kill, 0.18), 'partition-majority (shaded)': tint(partition, 0.18) },
      4,
    ).found;
    Object.assign(found, shaded);
    t.diagnostic(`${img.width}×${img.height}: ${((100 * inked) / (img.width * img.height)).toFixed(1)}% inked; ${JSON.stringify(found)}`);
    assert.ok(inked > img.width * img.height * 0.03, 'the page is drawn, not blank');
    for (const [name, n] of Object.entries(found)) assert.ok(n > 100, `${name} is on the screen (${n} pixels)`);
  });

  it("a benchmark's page: every measure of every table with the anchor and Ballast side by side", (t) => {
    const wide = [
      { workload: 'put x1', 'etcd ops/s': 848, 'ballast ops/s': 706, 'throughput ratio': 0.83, 'etcd p99 ms': 2.1, 'ballast p99 ms': 5.6 },
      {
        workload: 'put x16',
        'etcd ops/s': 2929,
        'ballast ops/s': 2578,
        'throughput ratio': 0.88,
        'etcd p99 ms': 13.4,
        'ballast p99 ms': 21.1,
      },
    ];
    const long = [
      { scenario: 'healthy', system: 'haproxy', 'good/s': 9000, 'p99 ms': 2.1 },
      { scenario: 'healthy', system: 'ballast sidecar', 'good/s': 6300, 'p99 ms': 2.3 },
      { scenario: 'overload', system: 'haproxy', 'good/s': 4000, 'p99 ms': 188 },
      { scenario: 'overload', system: 'ballast sidecar', 'good/s': 4000, 'p99 ms': 90 },
    ];
    const figures = [comparisonFigures(wide), comparisonFigures(long)];
    assert.deepEqual(
      figures.map((f) => f.length),
      [3, 2],
      'wide: ops/s, p99 ms and the ratio; long: good/s and p99 ms',
    );
    const img = screenshot(
      page(
        'bench: sample',
        ['Two tables.'],
        [
          { title: 'load', figures: figures[0] ?? [] },
          { title: 'scenarios', figures: figures[1] ?? [] },
        ],
      ),
      dir,
      'bench',
    );
    const { inked, found } = colours(img, { 'first system': '#4e79a7', 'second system': '#f28e2c', parity: '#cc3333' });
    t.diagnostic(`${img.width}×${img.height}: ${((100 * inked) / (img.width * img.height)).toFixed(1)}% inked; ${JSON.stringify(found)}`);
    assert.ok(inked > img.width * img.height * 0.02, 'the page is drawn, not blank');
    for (const [name, n] of Object.entries(found)) assert.ok(n > 100, `${name} is on the screen (${n} pixels)`);
    // The same reading of a page whose plots are missing finds them missing.
    const empty = colours(screenshot(page('bench: nothing drawn', ['No tables.'], []), dir, 'empty'), {
      'first system': '#4e79a7',
      'second system': '#f28e2c',
    });
    assert.ok(empty.inked < img.width * img.height * 0.01 && Object.values(empty.found).every((n) => n === 0), JSON.stringify(empty));
  });
});
