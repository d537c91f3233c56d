import assert from 'node:assert/strict';
import { it } from 'node:test';
import { commands } from './commands.ts';

it('the lazily loaded commands say the same summary as their modules', async () => {
  const modules: Record<string, () => Promise<{ name: string; summary: string }>> = {
    backup: async () => (await import('./backup.ts')).backupCommand,
    cluster: async () => (await import('./cluster.ts')).clusterCommand,
    kubectl: async () => (await import('./kubectl.ts')).kubectlCommand,
    'local-provisioner': async () => (await import('./local-provisioner.ts')).localProvisionerCommand,
    'mesh-init': async () => (await import('./mesh-init.ts')).meshInitCommand,
    operator: async () => (await import('./operator.ts')).operatorCommand,
    sidecar: async () => (await import('./sidecar.ts')).sidecarCommand,
    store: async () => (await import('./store.ts')).storeCommand,
    version: async () => (await import('./version.ts')).versionCommand,
  };
  assert.deepEqual(commands.map((c) => c.name).sort(), Object.keys(modules).sort());
  for (const c of commands) {
    const m = await modules[c.name]!();
    assert.equal(m.name, c.name);
    assert.equal(m.summary, c.summary, c.name);
  }
});
