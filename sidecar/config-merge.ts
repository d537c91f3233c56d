/**
 * The sidecar's configuration as it runs: the file's, with the upstreams and inbound listeners
 * discovery sends added (pure).
 */
import type { InboundConfig, SidecarConfig, UpstreamConfig } from './config.ts';
import { catalogue } from './errors.ts';
import { splitAddress } from './server/listener.ts';

/** The file's upstreams and inbound listeners, and the discovered ones (a name or address in both is an error). */
export function mergeDiscovered(file: SidecarConfig, discovered: UpstreamConfig[], inbound: InboundConfig[] = []): SidecarConfig {
  const taken = new Set(file.upstreams.map((u) => u.name));
  const clash = discovered.find((u) => taken.has(u.name));
  if (clash)
    throw catalogue.error(
      'SIDECAR_ERR_CONFIG_INVALID',
      `upstream ${clash.name} is both in the configuration file and from discovery; rename one`,
    );
  const inboundNames = new Set(file.inbound.map((i) => i.name));
  const inboundClash = inbound.find((i) => inboundNames.has(i.name));
  if (inboundClash)
    throw catalogue.error(
      'SIDECAR_ERR_CONFIG_INVALID',
      `inbound listener ${inboundClash.name} is both in the configuration file and from discovery; rename one`,
    );
  const listens = new Map(file.upstreams.filter((u) => u.listen).map((u) => [u.listen, u.name]));
  for (const ib of file.inbound) listens.set(ib.listen, ib.name);
  if (file.proxy.listen) listens.set(file.proxy.listen, 'the HTTP proxy');
  if (file.capture.outbound) listens.set(file.capture.outbound, 'the outbound capture listener (interception)');
  if (file.capture.inbound) listens.set(file.capture.inbound, 'the inbound capture listener (interception)');
  const admin = splitAddress(file.admin).port;
  for (const x of [
    ...discovered.map((u) => ({ name: `upstream ${u.name}`, listen: u.listen })),
    ...inbound.map((i) => ({ name: `inbound listener ${i.name}`, listen: i.listen })),
  ]) {
    if (!x.listen || x.listen.endsWith(':0')) continue;
    if (listens.has(x.listen))
      throw catalogue.error(
        'SIDECAR_ERR_CONFIG_INVALID',
        `${x.name} from discovery listens on ${x.listen}, which ${listens.get(x.listen)} already uses`,
      );
    if (String(splitAddress(x.listen).port) === String(admin))
      throw catalogue.error(
        'SIDECAR_ERR_CONFIG_INVALID',
        `${x.name} from discovery listens on ${x.listen}: port ${admin} is the sidecar's admin port`,
      );
    listens.set(x.listen, x.name);
  }
  return { ...file, upstreams: [...file.upstreams, ...discovered], inbound: [...file.inbound, ...inbound] };
}
