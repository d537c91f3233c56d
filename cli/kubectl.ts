/**
 * `kubectl ballast` (bin/kubectl-ballast runs `ballast kubectl`): a kubectl plugin for
 * StoreClusters, with kubectl's conventions: `-n/--namespace`, `-A/--all-namespaces`,
 * `--kubeconfig`, `--context`, `-o json|yaml`, exit code 1 with a message on stderr when refused.
 *
 * - `status [NAME]`: every StoreCluster in a table, or one with its members, conditions and
 *   recovery plan.
 * - `recover NAME [--approve PLAN_ID]`: the recovery plan for a lost quorum, as the operator
 *   proposes it in status.recovery; `--approve` annotates the StoreCluster with the plan's id
 *   (ballast.dev/approve-recovery) only if it is the plan the status shows now.
 *
 * Rendering is pure (`renderList`, `renderOne`, `renderPlan`); the API calls are at the edge.
 */
import { parseArgs } from 'node:util';
import { CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { type RecoveryStatus, type StoreCluster, group, version } from '../operator/api/storecluster.ts';
import { approveAnnotation } from '../operator/plan/recovery.ts';
import type { Command, Io } from './command.ts';

const help = `Usage: kubectl ballast COMMAND [NAME] [flags]

Commands:
  status [NAME]                  StoreClusters and their members, conditions and recovery plan
  recover NAME [--approve ID]    show the plan to recover a lost quorum; approve it by its id

Flags:
  -n, --namespace NS     the namespace (default: the context's, else default)
  -A, --all-namespaces   status: every namespace
  -o, --output FORMAT    json or yaml (default: a table)
      --kubeconfig PATH  the kubeconfig (default: $KUBECONFIG, else ~/.kube/config)
      --context NAME     the kubeconfig context
      --approve ID       recover: approve the plan with this id (it must be the one status shows)
`;

/** A table with columns padded as kubectl's are (three spaces apart). */
export function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd((widths[i] ?? 0) + 3))).join('').trimEnd()).join('\n') + '\n';
}

function age(created: string | undefined, now: number): string {
  if (!created) return '<unknown>';
  const s = Math.max(0, Math.floor((now - Date.parse(created)) / 1000));
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.floor(s / 60)}m` : s < 172_800 ? `${Math.floor(s / 3600)}h` : `${Math.floor(s / 86_400)}d`;
}

type Listed = StoreCluster & { metadata: StoreCluster['metadata'] & { creationTimestamp?: string } };

export function renderList(items: Listed[], allNamespaces: boolean, now: number): string {
  if (items.length === 0) return '';
  const head = [...(allNamespaces ? ['NAMESPACE'] : []), 'NAME', 'PHASE', 'READY', 'LEADER', 'VERSION', 'RECOVERY', 'AGE'];
  return table([head, ...items.map((sc) => [
    ...(allNamespaces ? [sc.metadata.namespace] : []), sc.metadata.name, sc.status?.phase ?? '', `${sc.status?.readyReplicas ?? 0}/${sc.spec.replicas}`,
    sc.status?.leader ?? '<none>', sc.status?.currentVersion ?? sc.spec.version, sc.status?.recovery ? `${sc.status.recovery.planId} ${sc.status.recovery.state}` : '<none>',
    age(sc.metadata.creationTimestamp, now),
  ])]);
}

export function renderOne(sc: StoreCluster): string {
  const st = sc.status ?? {};
  const out = [`StoreCluster ${sc.metadata.namespace}/${sc.metadata.name}: ${st.phase ?? 'no status yet'}, ${st.readyReplicas ?? 0}/${sc.spec.replicas} ready, leader ${st.leader ?? '<none>'}, version ${st.currentVersion ?? sc.spec.version}\n\n`];
  if (st.members?.length) {
    out.push(table([['MEMBER', 'ID', 'ROLE', 'READY', 'APPLIED', 'VERSION', 'RESTARTS', 'LAST STOP'], ...st.members.map((m) => [
      m.name, m.id, m.role, String(m.ready), String(m.appliedIndex ?? ''), m.version ?? '', String(m.restarts ?? 0),
      m.lastTermination ? `${m.lastTermination.reason} (${m.lastTermination.exitCode})` : '',
    ])]), '\n');
  }
  if (st.conditions?.length) out.push(table([['CONDITION', 'STATUS', 'REASON', 'MESSAGE'], ...st.conditions.map((c) => [c.type, c.status, c.reason ?? '', c.message ?? ''])]), '\n');
  out.push(st.recovery ? renderPlan(sc, st.recovery) : 'Recovery: none\n');
  return out.join('');
}

export function renderPlan(sc: StoreCluster, r: RecoveryStatus): string {
  const lines = [
    `Recovery plan ${r.planId}: ${r.state}`,
    `  survivor:          ${r.survivor} (id ${r.survivorId}, term ${r.term}, index ${r.index}); the cluster restarts from its data`,
    `  re-created empty:  ${r.recreate.join(', ') || '<none>'}`,
    `  discarded:         ${r.loses}`,
    ...(r.refused ? [`  refused approval:  ${r.refused}`] : []),
    ...(r.approvedAt ? [`  approved at:       ${r.approvedAt}`] : []),
    ...(r.completedAt ? [`  completed at:      ${r.completedAt}`] : []),
  ];
  if (r.state === 'AwaitingApproval') lines.push('', `If the members cannot come back with their data, approve it: kubectl ballast recover ${sc.metadata.name} -n ${sc.metadata.namespace} --approve ${r.planId}`);
  return `${lines.join('\n')}\n`;
}

/** Why approving `id` is refused, or undefined when it is the plan status shows and awaits approval. */
export function approvalRefusal(sc: StoreCluster, id: string): string | undefined {
  const r = sc.status?.recovery;
  if (!r) return `${sc.metadata.name} has no recovery plan (phase ${sc.status?.phase ?? 'unknown'}): the operator proposes one only while the quorum is lost`;
  if (r.planId !== id) return `${id} is not the plan ${sc.metadata.name}'s status shows now (${r.planId}, ${r.state}); read it again with kubectl ballast recover ${sc.metadata.name} -n ${sc.metadata.namespace}`;
  if (r.state !== 'AwaitingApproval') return `plan ${id} was approved already (${r.state})`;
  return undefined;
}

function print(io: Io, value: unknown, output: string | undefined): boolean {
  if (output === 'json') io.out(`${JSON.stringify(value, null, 2)}\n`);
  else if (output === 'yaml') io.out(stringify(value));
  else return false;
  return true;
}

export const kubectlCommand: Command = {
  name: 'kubectl',
  summary: 'the kubectl plugin (kubectl ballast status|recover): StoreClusters\' members, conditions and recovery plans; approve a plan',
  async run(args, io) {
    let parsed;
    try {
      parsed = parseArgs({
        args, allowPositionals: true, strict: true,
        options: {
          namespace: { type: 'string', short: 'n' }, 'all-namespaces': { type: 'boolean', short: 'A' }, output: { type: 'string', short: 'o' },
          kubeconfig: { type: 'string' }, context: { type: 'string' }, approve: { type: 'string' }, help: { type: 'boolean', short: 'h' },
        },
      });
    } catch (err) {
      io.err(`error: ${(err as Error).message}\n\n${help}`);
      return 2;
    }
    const { values: v, positionals: [cmd, name, ...extra] } = parsed;
    if (v.help || !cmd) {
      (v.help ? io.out : io.err)(help);
      return v.help ? 0 : 2;
    }
    if (v.output !== undefined && v.output !== 'json' && v.output !== 'yaml') {
      io.err(`error: --output ${v.output}: allowed formats are json and yaml (or none, for a table)\n`);
      return 2;
    }
    if (extra.length > 0 || (cmd !== 'status' && cmd !== 'recover')) {
      io.err(`error: ${extra.length > 0 ? `unexpected arguments: ${extra.join(' ')}` : `unknown command "${cmd}"`}\n\n${help}`);
      return 2;
    }
    const kc = new KubeConfig();
    if (v.kubeconfig) kc.loadFromFile(v.kubeconfig);
    else kc.loadFromDefault();
    if (v.context) kc.setCurrentContext(v.context);
    const namespace = v.namespace ?? kc.getContextObject(kc.getCurrentContext())?.namespace ?? 'default';
    const api = kc.makeApiClient(CustomObjectsApi);
    const get = async (n: string): Promise<StoreCluster> => (await api.getNamespacedCustomObject({ group, version, namespace, plural: 'storeclusters', name: n })) as StoreCluster;
    try {
      if (cmd === 'status' && !name) {
        const list = (v['all-namespaces']
          ? await api.listClusterCustomObject({ group, version, plural: 'storeclusters' })
          : await api.listNamespacedCustomObject({ group, version, namespace, plural: 'storeclusters' })) as { items: Listed[] };
        if (!print(io, list, v.output)) io.out(renderList(list.items, Boolean(v['all-namespaces']), Date.now()) || `No StoreClusters found in ${v['all-namespaces'] ? 'any' : `${namespace}`} namespace.\n`);
        return 0;
      }
      if (!name) {
        io.err(`error: kubectl ballast ${cmd} needs the StoreCluster's name\n`);
        return 2;
      }
      const sc = await get(name);
      if (cmd === 'status') {
        if (!print(io, sc, v.output)) io.out(renderOne(sc));
        return 0;
      }
      if (v.approve === undefined) {
        if (!print(io, sc.status?.recovery ?? null, v.output)) io.out(sc.status?.recovery ? renderPlan(sc, sc.status.recovery) : `${name} has no recovery plan (phase ${sc.status?.phase ?? 'unknown'}): the operator proposes one only while the quorum is lost\n`);
        return 0;
      }
      const refusal = approvalRefusal(sc, v.approve);
      if (refusal) {
        io.err(`error: ${refusal}\n`);
        return 1;
      }
      await api.patchNamespacedCustomObject({ group, version, namespace, plural: 'storeclusters', name, body: { metadata: { annotations: { [approveAnnotation]: v.approve } } } }, setHeaderOptions('Content-Type', PatchStrategy.MergePatch));
      io.out(`storecluster.ballast.dev/${name} recovery plan ${v.approve} approved; follow it with: kubectl ballast status ${name} -n ${namespace}\n`);
      return 0;
    } catch (err) {
      const code = (err as { code?: number }).code;
      io.err(`error: ${code === 404 ? `storecluster "${name ?? ''}" not found in namespace "${namespace}"` : (err as Error).message}\n`);
      return 1;
    }
  },
};
