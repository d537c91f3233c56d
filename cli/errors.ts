/** The CLI's error catalogue (usage problems are shared: BALLAST_ERR_USAGE in lib/errors.ts). */
import { defineCatalogue } from '../lib/errors.ts';

export const catalogue = defineCatalogue('cli', 'CLI', {
  CLI_ERR_NOT_BUILT: 'bin/ballast was run before `make build` produced dist/; run `make build`.',
  CLI_ERR_NODE_TOO_OLD: 'Ballast needs Node 24 or newer; run it through bin/ballast or `make`, which install Node 24.',
});
