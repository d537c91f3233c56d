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
 * - `backup NAME [--backup-name B] [--storage-from S]`: a StoreBackup of the cluster now, with the
 *   storage of a StoreBackupSchedule or StoreBackup (default: the cluster's schedule, else its
 *   newest backup); `backups [NAME]`: the backups, newest first.
 * - `restore NEW --from BACKUP [--to-revision R|--to-time T]`: a new StoreCluster restored from a
 *   backup (to a point in time after it, from its schedule's archive), shaped like the
 *   cluster the backup was taken of (version, size, storage, resources, timing).
 *
 * Rendering and the objects made are pure (`renderList`, `renderOne`, `renderPlan`,
 * `renderBackups`, `backupOf`, `restoredCluster`); the API calls are at the edge.
 */
import { parseArgs } from 'node:util';
import { CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { type BackupStorage, goodBackupsNewestFirst, type StoreBackup } from '../operator/api/storebackup.ts';
import { scheduleLabel, type StoreBackupSchedule } from '../operator/api/storebackupschedule.ts';
import { type RecoveryStatus, type StoreCluster, group, version } from '../operator/api/storecluster.ts';
import { approveAnnotation } from '../operator/plan/recovery.ts';
import { stamp } from '../operator/plan/storebackupschedule.ts';
import type { Command, Io } from './command.ts';

const help = `Usage: kubectl ballast COMMAND [NAME] [flags]

Commands:
  status [NAME]                  StoreClusters and their members, conditions and recovery plan
  recover NAME [--approve ID]    show the plan to recover a lost quorum; approve it by its id
  backup NAME                    back the StoreCluster up now (a StoreBackup)
  backups [NAME]                 the StoreBackups (of one StoreCluster), newest first
  restore NEW --from BACKUP      create StoreCluster NEW from a backup, shaped like the backed-up one
  restore NEW --of CLUSTER       ... from CLUSTER's newest good backup (before --to-revision/--to-time)

Flags:
  -n, --namespace NS     the namespace (default: the context's, else default)
  -A, --all-namespaces   status: every namespace
  -o, --output FORMAT    json or yaml (default: a table)
      --kubeconfig PATH  the kubeconfig (default: $KUBECONFIG, else ~/.kube/config)
      --context NAME     the kubeconfig context
      --approve ID       recover: approve the plan with this id (it must be the one status shows)
      --backup-name B    backup: the StoreBackup's name (default: NAME-<UTC time>)
      --storage-from S   backup: take the object storage from StoreBackupSchedule or StoreBackup S
                         (default: the cluster's schedule, else its newest backup)
      --from BACKUP      restore: the StoreBackup to restore (Succeeded)
      --of CLUSTER       restore: the newest good backup of CLUSTER (at or before the target)
      --replicas N       restore: members of the new cluster (default: as the backed-up cluster)
      --to-revision R    restore: point in time: the backup, then its schedule's archive up to revision R
      --to-time T        restore: point in time: up to the last change archived at or before T (RFC 3339)
      --dry-run          backup, restore: print the object (yaml, or -o json) instead of creating it
`;

/** A table with columns padded as kubectl's are (three spaces apart). */
export function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return (
    rows
      .map((r) =>
        r
          .map((c, i) => (i === r.length - 1 ? c : c.padEnd((widths[i] ?? 0) + 3)))
          .join('')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
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
  return table([
    head,
    ...items.map((sc) => [
      ...(allNamespaces ? [sc.metadata.namespace] : []),
      sc.metadata.name,
      sc.status?.phase ?? '',
      `${sc.status?.readyReplicas ?? 0}/${sc.spec.replicas}`,
      sc.status?.leader ?? '<none>',
      sc.status?.currentVersion ?? sc.spec.version,
      sc.status?.recovery ? `${sc.status.recovery.planId} ${sc.status.recovery.state}` : '<none>',
      age(sc.metadata.creationTimestamp, now),
    ]),
  ]);
}

/** The cluster's backups in one line: how many, the newest good one, the last failure after it. */
export function renderBackupLine(sc: StoreCluster, backups: StoreBackup[]): string {
  const mine = backups.filter((b) => b.spec.cluster === sc.metadata.name);
  const good = goodBackupsNewestFirst(mine)[0];
  if (!good)
    return `Backups: ${mine.length === 0 ? 'none' : `${mine.length}, none good`}; make one with kubectl ballast backup ${sc.metadata.name} -n ${sc.metadata.namespace}\n`;
  const v = good.status?.verification?.phase;
  return `Backups: ${mine.length}; newest good ${good.metadata.name} (revision ${good.status?.revision ?? '?'}, ${good.status?.completedAt ?? '?'}${v ? `, ${v.toLowerCase()}` : ''})\n`;
}

export function renderOne(sc: StoreCluster): string {
  const st = sc.status ?? {};
  const out = [
    `StoreCluster ${sc.metadata.namespace}/${sc.metadata.name}: ${st.phase ?? 'no status yet'}, ${st.readyReplicas ?? 0}/${sc.spec.replicas} ready, leader ${st.leader ?? '<none>'}, version ${st.currentVersion ?? sc.spec.version}\n\n`,
  ];
  if (st.members?.length) {
    out.push(
      table([
        ['MEMBER', 'ID', 'ROLE', 'READY', 'APPLIED', 'VERSION', 'RESTARTS', 'LAST STOP'],
        ...st.members.map((m) => [
          m.name,
          m.id,
          m.role,
          String(m.ready),
          String(m.appliedIndex ?? ''),
          m.version ?? '',
          String(m.restarts ?? 0),
          m.lastTermination ? `${m.lastTermination.reason} (${m.lastTermination.exitCode})` : '',
        ]),
      ]),
      '\n',
    );
  }
  if (st.conditions?.length)
    out.push(
      table([
        ['CONDITION', 'STATUS', 'REASON', 'MESSAGE'],
        ...st.conditions.map((c) => [c.type, c.status, c.reason ?? '', c.message ?? '']),
      ]),
      '\n',
    );
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
  if (r.state === 'AwaitingApproval')
    lines.push(
      '',
      `If the members cannot come back with their data, approve it: kubectl ballast recover ${sc.metadata.name} -n ${sc.metadata.namespace} --approve ${r.planId}`,
    );
  return `${lines.join('\n')}\n`;
}

/** Why approving `id` is refused, or undefined when it is the plan status shows and awaits approval. */
export function approvalRefusal(sc: StoreCluster, id: string): string | undefined {
  const r = sc.status?.recovery;
  if (!r)
    return `${sc.metadata.name} has no recovery plan (phase ${sc.status?.phase ?? 'unknown'}): the operator proposes one only while the quorum is lost`;
  if (r.planId !== id)
    return `${id} is not the plan ${sc.metadata.name}'s status shows now (${r.planId}, ${r.state}); read it again with kubectl ballast recover ${sc.metadata.name} -n ${sc.metadata.namespace}`;
  if (r.state !== 'AwaitingApproval') return `plan ${id} was approved already (${r.state})`;
  return undefined;
}

type Dated<T extends { metadata: object }> = T & { metadata: T['metadata'] & { creationTimestamp?: string } };

export function renderBackups(items: Array<Dated<StoreBackup>>, now: number): string {
  const sorted = [...items].sort((a, b) =>
    String(b.metadata.creationTimestamp ?? '').localeCompare(String(a.metadata.creationTimestamp ?? '')),
  );
  return table([
    ['NAME', 'CLUSTER', 'PHASE', 'REVISION', 'SIZE', 'VERIFIED', 'SCHEDULE', 'AGE', 'MESSAGE'],
    ...sorted.map((b) => [
      b.metadata.name,
      b.spec.cluster,
      b.status?.phase ?? 'Pending',
      String(b.status?.revision ?? ''),
      b.status?.sizeBytes !== undefined ? String(b.status.sizeBytes) : '',
      b.status?.verification?.phase ?? (b.spec.verify ? 'Pending' : '<none>'),
      b.metadata.labels?.[scheduleLabel] ?? '<none>',
      age(b.metadata.creationTimestamp, now),
      b.status?.phase === 'Failed'
        ? (b.status.message ?? '')
        : b.status?.verification?.phase === 'Failed'
          ? (b.status.verification.message ?? '')
          : '',
    ]),
  ]);
}

/**
 * Where a backup made by hand goes: the storage of `from` when named, else of the cluster's
 * schedule, else of its newest StoreBackup; or why none can be chosen.
 */
export function storageFor(
  cluster: string,
  o: { from?: string | undefined; schedules: StoreBackupSchedule[]; backups: Array<Dated<StoreBackup>> },
): BackupStorage | string {
  if (o.from) {
    const named = o.schedules.find((s) => s.metadata.name === o.from) ?? o.backups.find((b) => b.metadata.name === o.from);
    return named ? named.spec.storage : `--storage-from ${o.from}: no StoreBackupSchedule or StoreBackup of that name in this namespace`;
  }
  const schedule = o.schedules.filter((s) => s.spec.cluster === cluster).sort((a, b) => a.metadata.name.localeCompare(b.metadata.name))[0];
  if (schedule) return schedule.spec.storage;
  const newest = o.backups
    .filter((b) => b.spec.cluster === cluster)
    .sort((a, b) => String(b.metadata.creationTimestamp ?? '').localeCompare(String(a.metadata.creationTimestamp ?? '')))[0];
  if (newest) return newest.spec.storage;
  return `${cluster} has no StoreBackupSchedule or StoreBackup to take the object storage from: give --storage-from, or create a StoreBackup with spec.storage (docs/operations.md, "Backups to object storage")`;
}

export function backupOf(sc: StoreCluster, storage: BackupStorage, name: string): StoreBackup {
  return {
    apiVersion: `${group}/${version}`,
    kind: 'StoreBackup',
    metadata: { name, namespace: sc.metadata.namespace },
    spec: { cluster: sc.metadata.name, storage },
  };
}

/**
 * A new StoreCluster from a backup, shaped like the cluster it was taken of when that still
 * exists (version, replicas, storage, resources, timing, compaction, quota); TLS and auth are left
 * out, their Secrets belong to the old cluster's names. Or why not.
 */
export function restoredCluster(
  name: string,
  backup: StoreBackup,
  source: StoreCluster | undefined,
  replicas: number | undefined,
  target: { toRevision?: number; toTime?: string } = {},
): StoreCluster | string {
  if (backup.status?.phase !== 'Succeeded')
    return `StoreBackup ${backup.metadata.name} is ${backup.status?.phase ?? 'Pending'}, not Succeeded: only a completed backup restores${backup.status?.message ? ` (${backup.status.message})` : ''}`;
  const from = source?.spec;
  const spec: Partial<StoreCluster['spec']> = {
    replicas: replicas ?? from?.replicas ?? 3,
    ...(from ? { version: from.version, storage: from.storage, compaction: from.compaction, timing: from.timing } : {}),
    ...(from?.resources ? { resources: from.resources } : {}),
    ...(from?.image ? { image: from.image } : {}),
    ...(from?.quotaBytes ? { quotaBytes: from.quotaBytes } : {}),
    ...(from?.snapshotCount ? { snapshotCount: from.snapshotCount } : {}),
    restore: { backup: backup.metadata.name, ...target },
  };
  return {
    apiVersion: `${group}/${version}`,
    kind: 'StoreCluster',
    metadata: { name, namespace: backup.metadata.namespace },
    spec: spec as StoreCluster['spec'],
  };
}

/**
 * The backup a restore of `cluster` starts from (pure): its newest good one, or with a target,
 * the newest good one the target is after (a revision at or below it; completed by the time, so
 * its snapshot was taken before it). Or why none.
 */
export function baseBackup(
  backups: StoreBackup[],
  cluster: string,
  target: { toRevision?: number; toTime?: string } = {},
): StoreBackup | string {
  const good = goodBackupsNewestFirst(backups.filter((b) => b.spec.cluster === cluster));
  const at = target.toTime ? Date.parse(target.toTime) : undefined;
  const fit = good.find(
    (b) =>
      (target.toRevision === undefined || (b.status?.revision ?? Infinity) <= target.toRevision) &&
      (at === undefined || Date.parse(b.status?.completedAt ?? '') <= at),
  );
  if (fit) return fit;
  if (good.length === 0)
    return `StoreCluster ${cluster} has no good backup (Succeeded, not failed verification); make one with kubectl ballast backup ${cluster}`;
  const oldest = good[good.length - 1] as StoreBackup;
  return `no good backup of ${cluster} is before ${target.toRevision !== undefined ? `revision ${target.toRevision}` : target.toTime}; the oldest is ${oldest.metadata.name} (revision ${oldest.status?.revision ?? '?'}, completed ${oldest.status?.completedAt ?? '?'})`;
}

function print(io: Io, value: unknown, output: string | undefined): boolean {
  if (output === 'json') io.out(`${JSON.stringify(value, null, 2)}\n`);
  else if (output === 'yaml') io.out(stringify(value));
  else return false;
  return true;
}

export const kubectlCommand: Command = {
  name: 'kubectl',
  summary:
    "the kubectl plugin (kubectl ballast status|recover|backup|backups|restore): StoreClusters' members, conditions and recovery plans; approve a plan; back up and restore",
  async run(args, io) {
    let parsed;
    try {
      parsed = parseArgs({
        args,
        allowPositionals: true,
        strict: true,
        options: {
          namespace: { type: 'string', short: 'n' },
          'all-namespaces': { type: 'boolean', short: 'A' },
          output: { type: 'string', short: 'o' },
          kubeconfig: { type: 'string' },
          context: { type: 'string' },
          approve: { type: 'string' },
          help: { type: 'boolean', short: 'h' },
          'backup-name': { type: 'string' },
          'storage-from': { type: 'string' },
          from: { type: 'string' },
          replicas: { type: 'string' },
          'dry-run': { type: 'boolean' },
          'to-revision': { type: 'string' },
          'to-time': { type: 'string' },
          of: { type: 'string' },
        },
      });
    } catch (err) {
      io.err(`error: ${(err as Error).message}\n\n${help}`);
      return 2;
    }
    const {
      values: v,
      positionals: [cmd, name, ...extra],
    } = parsed;
    if (v.help || !cmd) {
      (v.help ? io.out : io.err)(help);
      return v.help ? 0 : 2;
    }
    if (v.output !== undefined && v.output !== 'json' && v.output !== 'yaml') {
      io.err(`error: --output ${v.output}: allowed formats are json and yaml (or none, for a table)\n`);
      return 2;
    }
    if (extra.length > 0 || !['status', 'recover', 'backup', 'backups', 'restore'].includes(cmd)) {
      io.err(`error: ${extra.length > 0 ? `unexpected arguments: ${extra.join(' ')}` : `unknown command "${cmd}"`}\n\n${help}`);
      return 2;
    }
    const kc = new KubeConfig();
    if (v.kubeconfig) kc.loadFromFile(v.kubeconfig);
    else kc.loadFromDefault();
    if (v.context) kc.setCurrentContext(v.context);
    const namespace = v.namespace ?? kc.getContextObject(kc.getCurrentContext())?.namespace ?? 'default';
    const api = kc.makeApiClient(CustomObjectsApi);
    const get = async (n: string): Promise<StoreCluster> =>
      (await api.getNamespacedCustomObject({ group, version, namespace, plural: 'storeclusters', name: n })) as StoreCluster;
    const listOf = async <T>(plural: string): Promise<T[]> =>
      ((await api.listNamespacedCustomObject({ group, version, namespace, plural })) as { items: T[] }).items;
    const create = async (plural: string, body: StoreBackup | StoreCluster): Promise<number> => {
      if (v['dry-run']) {
        print(io, body, v.output ?? 'yaml');
        return 0;
      }
      try {
        await api.createNamespacedCustomObject({ group, version, namespace, plural, body });
      } catch (err) {
        if ((err as { code?: number }).code !== 409) throw err;
        io.err(
          `error: ${plural.slice(0, -1)} "${body.metadata.name}" already exists in namespace "${namespace}"${plural === 'storeclusters' ? ': a cluster is never restored over; pick a new name' : ''}\n`,
        );
        return 1;
      }
      io.out(
        `${plural.slice(0, -1)}.${group}/${body.metadata.name} created; follow it with: kubectl get ${plural.slice(0, -1)} ${body.metadata.name} -n ${namespace} -w\n`,
      );
      return 0;
    };
    try {
      if (cmd === 'backups') {
        const all = (await listOf<Dated<StoreBackup>>('storebackups')).filter((b) => !name || b.spec.cluster === name);
        if (!print(io, { apiVersion: 'v1', kind: 'List', items: all }, v.output))
          io.out(
            all.length > 0
              ? renderBackups(all, Date.now())
              : `No StoreBackups${name ? ` of ${name}` : ''} found in ${namespace} namespace.\n`,
          );
        return 0;
      }
      if (cmd === 'restore') {
        if (!name || (!v.from && !v.of) || (v.from && v.of)) {
          io.err("error: kubectl ballast restore needs the new StoreCluster's name and one of --from BACKUP or --of CLUSTER\n");
          return 2;
        }
        const replicas = v.replicas === undefined ? undefined : Number(v.replicas);
        if (replicas !== undefined && !(Number.isInteger(replicas) && replicas >= 1 && replicas <= 7)) {
          io.err(`error: --replicas ${v.replicas}: give a whole number from 1 to 7\n`);
          return 2;
        }
        const toRevision = v['to-revision'] === undefined ? undefined : Number(v['to-revision']);
        if (toRevision !== undefined && !(Number.isSafeInteger(toRevision) && toRevision >= 1)) {
          io.err(`error: --to-revision ${v['to-revision']}: give a revision (a whole number, 1 or more)\n`);
          return 2;
        }
        const toTime = v['to-time'];
        if (
          toTime !== undefined &&
          (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/.test(toTime) || Number.isNaN(Date.parse(toTime)))
        ) {
          io.err(`error: --to-time ${toTime}: give an RFC 3339 time, such as 2026-12-02T14:03:00Z\n`);
          return 2;
        }
        if (toRevision !== undefined && toTime !== undefined) {
          io.err('error: give --to-revision or --to-time, not both\n');
          return 2;
        }
        const target = { ...(toRevision !== undefined ? { toRevision } : {}), ...(toTime !== undefined ? { toTime } : {}) };
        let backup: StoreBackup;
        if (v.of) {
          const base = baseBackup(await listOf<StoreBackup>('storebackups'), v.of, target);
          if (typeof base === 'string') {
            io.err(`error: ${base}\n`);
            return 1;
          }
          backup = base;
        } else {
          backup = (await api
            .getNamespacedCustomObject({ group, version, namespace, plural: 'storebackups', name: v.from as string })
            .catch((err: unknown) => {
              if ((err as { code?: number }).code === 404)
                throw new Error(
                  `storebackup "${v.from}" not found in namespace "${namespace}"; list them with kubectl ballast backups -n ${namespace}`,
                );
              throw err;
            })) as StoreBackup;
        }
        const source = await get(backup.spec.cluster).catch(() => undefined);
        const made = restoredCluster(name, backup, source, replicas, target);
        if (typeof made === 'string') {
          io.err(`error: ${made}\n`);
          return 1;
        }
        return await create('storeclusters', made);
      }
      if (cmd === 'status' && !name) {
        const list = (
          v['all-namespaces']
            ? await api.listClusterCustomObject({ group, version, plural: 'storeclusters' })
            : await api.listNamespacedCustomObject({ group, version, namespace, plural: 'storeclusters' })
        ) as { items: Listed[] };
        if (!print(io, list, v.output))
          io.out(
            renderList(list.items, Boolean(v['all-namespaces']), Date.now()) ||
              `No StoreClusters found in ${v['all-namespaces'] ? 'any' : `${namespace}`} namespace.\n`,
          );
        return 0;
      }
      if (!name) {
        io.err(`error: kubectl ballast ${cmd} needs the StoreCluster's name\n`);
        return 2;
      }
      const sc = await get(name);
      if (cmd === 'backup') {
        const storage = storageFor(name, {
          from: v['storage-from'],
          schedules: await listOf<StoreBackupSchedule>('storebackupschedules'),
          backups: await listOf<Dated<StoreBackup>>('storebackups'),
        });
        if (typeof storage === 'string') {
          io.err(`error: ${storage}\n`);
          return 1;
        }
        return await create('storebackups', backupOf(sc, storage, v['backup-name'] ?? `${name}-${stamp(new Date())}`));
      }
      if (cmd === 'status') {
        if (!print(io, sc, v.output))
          io.out(renderOne(sc) + renderBackupLine(sc, await listOf<StoreBackup>('storebackups').catch(() => [])));
        return 0;
      }
      if (v.approve === undefined) {
        if (!print(io, sc.status?.recovery ?? null, v.output))
          io.out(
            sc.status?.recovery
              ? renderPlan(sc, sc.status.recovery)
              : `${name} has no recovery plan (phase ${sc.status?.phase ?? 'unknown'}): the operator proposes one only while the quorum is lost\n`,
          );
        return 0;
      }
      const refusal = approvalRefusal(sc, v.approve);
      if (refusal) {
        io.err(`error: ${refusal}\n`);
        return 1;
      }
      await api.patchNamespacedCustomObject(
        {
          group,
          version,
          namespace,
          plural: 'storeclusters',
          name,
          body: { metadata: { annotations: { [approveAnnotation]: v.approve } } },
        },
        setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
      );
      io.out(
        `storecluster.ballast.dev/${name} recovery plan ${v.approve} approved; follow it with: kubectl ballast status ${name} -n ${namespace}\n`,
      );
      return 0;
    } catch (err) {
      const code = (err as { code?: number }).code;
      io.err(`error: ${code === 404 ? `storecluster "${name ?? ''}" not found in namespace "${namespace}"` : (err as Error).message}\n`);
      return 1;
    }
  },
};
