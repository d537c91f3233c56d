/** Every CRD Ballast defines, rendered as the YAML files in `crds/`. */
import { stringify } from 'yaml';
import { crd } from '../../api/schema.ts';
import { resiliencePolicyCrd } from '../../api/resiliencepolicy.ts';
import { storeBackupCrd } from './storebackup.ts';
import { storeBackupScheduleCrd } from './storebackupschedule.ts';
import { storeClusterCrd } from './storecluster.ts';

export const definitions = [storeClusterCrd, storeBackupCrd, storeBackupScheduleCrd, resiliencePolicyCrd];

/** file name → contents. */
export function renderCrds(): Map<string, string> {
  const out = new Map<string, string>();
  for (const d of definitions) {
    out.set(
      `${d.plural}.${d.group}.yaml`,
      `# Generated from operator/api by \`npm run gen:crds\`; do not edit.\n${stringify(crd(d), { lineWidth: 0 })}`,
    );
  }
  return out;
}
