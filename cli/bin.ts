/** The process entry point behind bin/ballast. */
import { isBallastError } from '../lib/errors.ts';
import { main } from './main.ts';

const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(
    `ballast: Node ${process.version} is too old (CLI_ERR_NODE_TOO_OLD); Ballast needs Node 24+. Use bin/ballast after 'make build', which installs it.\n`,
  );
  process.exit(1);
}

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
