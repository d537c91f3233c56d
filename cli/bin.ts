/**
 * The process entry point behind bin/ballast.
 *
 * Stack traces map to the TypeScript sources through Ballast's own source maps, switched on here
 * before anything else loads, rather than with `--enable-source-maps`: that flag also reads and
 * keeps the maps of every library in node_modules (grpc-js, protobufjs, prom-client, ...), whose
 * frames are plain JavaScript worth reading as is, for about 4 MiB of every process's resident
 * memory (a sidecar idle: 92.7 MiB with the flag, 88.8 without the libraries' maps; docs/sidecar.md,
 * Memory). Modules are imported dynamically below so that none is compiled before this line.
 */
import * as nodeModule from 'node:module';

const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(
    `ballast: Node ${process.version} is too old (CLI_ERR_NODE_TOO_OLD); Ballast needs Node 24+. Use bin/ballast after 'make build', which installs it.\n`,
  );
  process.exit(1);
}

// An explicit --enable-source-maps (NODE_OPTIONS) keeps its meaning: every module's maps.
if (!process.sourceMapsEnabled) nodeModule.setSourceMapsSupport(true, { nodeModules: false, generatedCode: false });
const { isBallastError } = await import('../lib/errors.ts');
const { main } = await import('./main.ts');

main(process.argv.slice(2), {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  env: process.env,
}).then(
  (code) => {
    // Long-running commands resolve once stopped; exit even if a library left a handle open.
    process.exitCode = code;
    process.exit(code);
  },
  (err: unknown) => {
    const code = isBallastError(err) ? `${err.code}: ` : '';
    process.stderr.write(`ballast: ${code}${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
