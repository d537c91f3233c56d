/**
 * YAML parsing, with the yaml package loaded on first use rather than at start. Every command
 * reads its flags through lib/config.ts and the sidecar its file through sidecar/config.ts, but
 * most processes never see a YAML document: a sidecar injected into a pod gets its whole
 * configuration from the discovery service and reads no file. Loading yaml anyway adds 1.7 MiB
 * of resident memory to every such process (bench/sidecar-memory.ts; docs/sidecar.md, Memory).
 */
import { createRequire } from 'node:module';
import type * as Yaml from 'yaml';

let yaml: typeof Yaml | undefined;

/** `yaml`'s `parse` (YAML 1.2, duplicate keys an error), loaded on first call. */
export function parseYaml(text: string): unknown {
  yaml ??= createRequire(import.meta.url)('yaml') as typeof Yaml;
  return yaml.parse(text);
}
