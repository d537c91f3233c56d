// `make image-check`: there is no container engine here, so run the Dockerfile's steps in a
// clean directory instead, the way a builder would: each stage gets a directory standing in for
// its root filesystem; FROM node:<major> stands for this checkout's Node of that major (checked);
// ARG/ENV/WORKDIR/COPY (from the context minus .dockerignore, or --from a stage)/RUN (in the
// stage's working directory) are carried out; then the final stage's entrypoint is started as
// its USER with its root read-only, and must print `ballast version`. Also checks the image's
// contract with the chart and the kubelet: OCI labels, a non-root user, ENTRYPOINT ["ballast"],
// and the chart's default image (ballast:<appVersion>) matching package.json and `ballast:*`.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const fail = (msg: string): never => {
  console.error(`image-check: ${msg}`);
  process.exit(1);
};
const step = (msg: string) => console.log(`==> ${msg}`);

const nodeMajor = process.versions.node.split('.')[0];
const lines = readFileSync(join(root, 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
const ignore = readFileSync(join(root, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim()).filter(Boolean);
const ignored = (rel: string) => ignore.some((p) => (p.startsWith('*') ? rel.endsWith(p.slice(1)) : rel === p || rel.startsWith(`${p}/`)));

const work = mkdtempSync(join(tmpdir(), 'ballast-image-'));
// The image's user must be able to reach its files, as in a real image (mkdtemp makes 0700).
chmodSync(work, 0o755);
const context = join(work, 'context');
step(`build context (minus .dockerignore) into ${context}`);
const files = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard'], { cwd: root, encoding: 'utf8' }).split('\n').filter((f) => f && !ignored(f) && existsSync(join(root, f)));
for (const f of files) {
  mkdirSync(dirname(join(context, f)), { recursive: true });
  cpSync(join(root, f), join(context, f));
}

interface Stage { name: string; root: string; workdir: string; env: Record<string, string>; user?: string; labels: Record<string, string>; entrypoint?: string[]; cmd?: string[] }
const stages: Stage[] = [];
const args: Record<string, string> = {};
const sub = (s: string, env: Record<string, string> = {}) => s.replace(/\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?/g, (m, k: string) => env[k] ?? args[k] ?? m);
const inStage = (st: Stage, p: string) => join(st.root, p.startsWith('/') ? p : join(st.workdir, p));
const cur = () => stages.at(-1) ?? fail('an instruction before FROM');
const parseKv = (rest: string) => [...rest.matchAll(/([A-Za-z0-9_.-]+)=("([^"]*)"|(\S+))/g)].map((m) => [m[1] as string, (m[3] ?? m[4]) as string] as const);

for (const line of lines) {
  const [instr, ...restParts] = line.split(/\s+/);
  const rest = restParts.join(' ');
  switch (instr?.toUpperCase()) {
    case 'ARG': {
      const [k, v] = rest.split('=');
      if (k && v !== undefined && args[k] === undefined) args[k] = v;
      break;
    }
    case 'FROM': {
      const [image, , name] = sub(rest).split(/\s+/);
      const major = /^node:(\d+)/.exec(image ?? '')?.[1] ?? fail(`FROM ${image}: this check stands in only for node:<major> images`);
      if (major !== nodeMajor) fail(`FROM ${image} is Node ${major}, but the project runs on Node ${nodeMajor}`);
      const dir = join(work, `stage-${stages.length}`);
      mkdirSync(dir, { recursive: true });
      stages.push({ name: name ?? String(stages.length), root: dir, workdir: '/', env: {}, labels: {} });
      step(`FROM ${image}${name ? ` AS ${name}` : ''} (Node ${process.versions.node} from .tools stands in)`);
      break;
    }
    case 'WORKDIR': cur().workdir = sub(rest); mkdirSync(inStage(cur(), '.'), { recursive: true }); break;
    case 'ENV': for (const [k, v] of parseKv(rest)) cur().env[k] = sub(v, cur().env); break;
    case 'LABEL': for (const [k, v] of parseKv(rest)) cur().labels[k] = sub(v); break;
    case 'USER': cur().user = rest; break;
    case 'ENTRYPOINT': cur().entrypoint = JSON.parse(rest) as string[]; break;
    case 'CMD': cur().cmd = JSON.parse(rest) as string[]; break;
    case 'COPY': {
      const from = /^--from=(\S+)\s+/.exec(rest);
      const parts = (from ? rest.slice(from[0].length) : rest).split(/\s+/);
      const dest = parts.pop() as string;
      const src = from ? stages.find((s) => s.name === from[1]) ?? fail(`COPY --from=${from[1]}: no such stage`) : undefined;
      for (const p of parts) {
        const source = src ? join(src.root, p) : join(context, p);
        if (!existsSync(source)) fail(`COPY ${p}: not in the ${src ? `stage ${src.name}` : 'build context'}`);
        const target = inStage(cur(), dest.endsWith('/') || parts.length > 1 || dest === '.' || dest === './' ? join(dest, p.split('/').pop() as string) : dest);
        mkdirSync(dirname(target), { recursive: true });
        cpSync(source, target, { recursive: true, verbatimSymlinks: true });
      }
      step(`COPY ${rest}`);
      break;
    }
    case 'RUN': {
      step(`RUN ${rest}`);
      const st = cur();
      const r = spawnSync('bash', ['-euo', 'pipefail', '-c', rest], { cwd: inStage(st, '.'), stdio: 'inherit', env: { ...process.env, ...st.env, PATH: `${dirname(process.execPath)}:${process.env['PATH']}` } });
      if (r.status !== 0) fail(`RUN ${rest}: exit ${r.status}`);
      break;
    }
    default: fail(`unsupported instruction: ${instr}`);
  }
}

const final = stages.at(-1) ?? fail('no stage');
step('checking the image contract');
for (const k of ['org.opencontainers.image.title', 'org.opencontainers.image.version', 'org.opencontainers.image.source', 'org.opencontainers.image.licenses']) if (!final.labels[k]) fail(`missing OCI label ${k}`);
if (!final.user || /^(0|root)(:|$)/.test(final.user)) fail(`USER must be non-root (got ${final.user ?? 'none'})`);
if (JSON.stringify(final.entrypoint) !== '["ballast"]') fail(`ENTRYPOINT must be ["ballast"] (got ${JSON.stringify(final.entrypoint)})`);
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
const chart = readFileSync(join(root, 'charts', 'ballast', 'Chart.yaml'), 'utf8');
const values = readFileSync(join(root, 'charts', 'ballast', 'values.yaml'), 'utf8');
if (!chart.includes(`appVersion: "${pkg.version}"`)) fail(`charts/ballast appVersion is not ${pkg.version} (package.json)`);
if (!/repository: ballast\n/.test(values)) fail('the chart\'s default image repository is not "ballast" (what the kubelet maps with ballast:*)');
if (!readFileSync(join(root, 'cluster', 'control-plane.ts'), 'utf8').includes("'ballast:*'")) fail('the local kubelet no longer maps ballast:*');
const devDeps = Object.keys((JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { devDependencies?: Record<string, string> }).devDependencies ?? {});
const shipped = readdirSync(join(final.root, 'app', 'node_modules'));
const leaked = devDeps.filter((d) => shipped.includes(d.split('/')[0] as string) && !d.startsWith('@types') && existsSync(join(final.root, 'app', 'node_modules', d)));
if (leaked.length > 0) fail(`dev dependencies in the runtime image: ${leaked.join(', ')}`);

step(`starting the entrypoint as ${final.user} with the image read-only`);
const app = join(final.root, 'app');
const [uid, gid] = (final.user ?? '65532:65532').split(':');
const entry = join(app, 'bin', 'ballast');
const script = `mount --bind "${final.root}" "${final.root}" && mount -o remount,ro,bind "${final.root}" && exec setpriv --reuid=${uid} --regid=${gid ?? uid} --clear-groups env -i PATH="${dirname(process.execPath)}:/usr/bin:/bin" NODE_ENV="${final.env['NODE_ENV'] ?? ''}" "${entry}" version`;
const run = spawnSync('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script], { encoding: 'utf8' });
if (run.status !== 0) fail(`the entrypoint failed: ${run.stderr}${run.stdout}`);
if (!run.stdout.includes(pkg.version)) fail(`ballast version did not print ${pkg.version}: ${run.stdout}`);
const size = (p: string): number => (statSync(p).isDirectory() ? readdirSync(p).reduce((s, e) => s + size(join(p, e)), 0) : statSync(p).size);
console.log(`\nimage-check: ok. ${relative(work, app)}: ${(size(app) / 1024 / 1024).toFixed(0)} MiB above the base image; \`ballast version\` as ${final.user}, read-only:\n${run.stdout.trim()}`);
rmSync(work, { recursive: true, force: true });
