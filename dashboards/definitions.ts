/**
 * The Grafana dashboards: their content (rows, panels, PromQL, units, variables) is the table
 * below; `buildDashboard` turns it into Grafana's dashboard model with Grafana's Foundation SDK
 * (`@grafana/grafana-foundation-sdk`: typed panels, Prometheus queries, variables and units).
 * `npm run gen:observability` writes the JSON into dashboards/*.json (import them into Grafana)
 * and into the chart, which ships them as ConfigMaps labelled `grafana_dashboard: "1"` for
 * Grafana's dashboard sidecar.
 *
 * Checked: the rules of Grafana's dashboard linter (dashboards/lint.ts, in
 * test/integration/observability.test.ts), and every panel's and variable's query evaluated against
 * a real Prometheus scraping a running cluster (test/e2e/observe.test.ts): a query that errors or
 * returns nothing fails that test. Panels that count rare events (errors, refusals) add
 * `or <the same selection> * 0`, so a quiet system shows 0, not "No data".
 *
 * Labels: `namespace` and `pod` come from Prometheus' Kubernetes discovery (ServiceMonitor and
 * PodMonitor set them, as does the chart's scrape example in docs/observability.md); `job` and
 * `instance` are Prometheus' own target labels.
 */
import type * as cog from '@grafana/grafana-foundation-sdk/cog';
import * as common from '@grafana/grafana-foundation-sdk/common';
import * as dashboard from '@grafana/grafana-foundation-sdk/dashboard';
import * as prometheus from '@grafana/grafana-foundation-sdk/prometheus';
import * as statPanel from '@grafana/grafana-foundation-sdk/stat';
import * as timeseries from '@grafana/grafana-foundation-sdk/timeseries';
import * as Units from '@grafana/grafana-foundation-sdk/units';
import { type DashboardModel, fillAll, modelPanels } from './lint.ts';

export interface Panel {
  title: string;
  description: string;
  /** PromQL; `$__rate_interval` and the dashboard's variables may appear. */
  exprs: Array<{ expr: string; legend: string }>;
  /** Grafana's unit: counts, operations or requests per second, seconds, bytes or a 0–1 ratio. */
  unit: 'count' | 'ops' | 'reqps' | 's' | 'bytes' | 'percentunit';
  kind?: 'timeseries' | 'stat';
  /** Width in grid columns (24 per row); 8 by default. */
  width?: number;
}

export interface Variable {
  name: string;
  label: string;
  /** The series selector and label of Grafana's `label_values(<selector>, <label>)`. */
  metric: string;
  labelName: string;
}

export interface Dashboard {
  uid: string;
  title: string;
  description: string;
  variables: Variable[];
  rows: Array<{ title: string; panels: Panel[] }>;
}

/**
 * Every query is narrowed by the dashboard's namespace, job and instance variables (Prometheus'
 * target labels, as Grafana's dashboard linter asks).
 */
const ns = 'namespace=~"$namespace", job=~"$job", instance=~"$instance"';
/** The namespace, job and instance variables, each listing what the ones before it leave. */
function targetVariables(metric: string): Variable[] {
  return [
    { name: 'namespace', label: 'Namespace', metric, labelName: 'namespace' },
    { name: 'job', label: 'Job', metric: `${metric}{namespace=~"$namespace"}`, labelName: 'job' },
    { name: 'instance', label: 'Instance', metric: `${metric}{namespace=~"$namespace", job=~"$job"}`, labelName: 'instance' },
  ];
}
const up = `${ns}, upstream=~"$upstream"`;
const r = '[$__rate_interval]';
/** `sel` is a rate, or 0 for every series of `base` when nothing happened. */
const orZero = (sel: string, base: string) => `(${sel}) or (${base} * 0)`;

const store: Dashboard = {
  uid: 'ballast-store',
  title: 'Ballast / Store',
  description:
    "Members of ballast store clusters: leadership, consensus, disk, apply, watchers and the database. Metric names follow etcd's, so etcd's own dashboards work too.",
  variables: targetVariables('etcd_server_has_leader'),
  rows: [
    {
      title: 'Leadership',
      panels: [
        {
          title: 'Members with a leader',
          unit: 'count',
          kind: 'stat',
          description:
            'Members that know a leader, per namespace. Fewer than the members running means a partition or an election in progress.',
          exprs: [{ expr: `sum by (namespace) (etcd_server_has_leader{${ns}})`, legend: '{{namespace}}' }],
        },
        {
          title: 'Leader',
          unit: 'count',
          kind: 'stat',
          description: 'The member that leads (1).',
          exprs: [{ expr: `max by (namespace, pod) (etcd_server_is_leader{${ns}}) == 1`, legend: '{{namespace}}/{{pod}}' }],
        },
        {
          title: 'Leader changes (1h)',
          unit: 'count',
          description:
            'Leader changes each member saw in the last hour. Frequent changes point at slow disks, CPU starvation or a flaky network.',
          exprs: [{ expr: `max by (namespace) (increase(etcd_server_leader_changes_seen_total{${ns}}[1h]))`, legend: '{{namespace}}' }],
        },
      ],
    },
    {
      title: 'Consensus',
      panels: [
        {
          title: 'Proposals committed / s',
          unit: 'ops',
          description: 'Raft proposals committed per second, per member.',
          exprs: [{ expr: `sum by (pod) (rate(etcd_server_proposals_committed_total{${ns}}${r}))`, legend: '{{pod}}' }],
        },
        {
          title: 'Proposals pending',
          unit: 'count',
          description: 'Proposals waiting to commit. A growing number means the leader cannot reach a quorum fast enough.',
          exprs: [{ expr: `sum by (pod) (etcd_server_proposals_pending{${ns}})`, legend: '{{pod}}' }],
        },
        {
          title: 'Proposals failed / s',
          unit: 'ops',
          description: 'Proposals that failed (usually a leader change during the proposal).',
          exprs: [{ expr: `sum by (pod) (rate(etcd_server_proposals_failed_total{${ns}}${r}))`, legend: '{{pod}}' }],
        },
      ],
    },
    {
      title: 'Disk and apply',
      panels: [
        {
          title: 'WAL fsync p99',
          unit: 's',
          description:
            "The 99th percentile of the write-ahead log's fsync. Above 10 ms the disk is the cluster's bottleneck; above 1 s elections follow.",
          exprs: [
            {
              expr: `histogram_quantile(0.99, sum by (pod, le) (rate(etcd_disk_wal_fsync_duration_seconds_bucket{${ns}}${r})))`,
              legend: '{{pod}}',
            },
          ],
        },
        {
          title: 'Apply p99',
          unit: 's',
          description: 'Time to apply one batch of committed entries to the key-value state (watchers notified).',
          exprs: [
            {
              expr: `histogram_quantile(0.99, sum by (pod, le) (rate(ballast_store_apply_duration_seconds_bucket{${ns}}${r})))`,
              legend: '{{pod}}',
            },
          ],
        },
        {
          title: 'Apply lag',
          unit: 'count',
          description: 'Committed entries a member has not applied yet. Readiness fails above a small lag.',
          exprs: [{ expr: `max by (pod) (ballast_store_apply_lag_entries{${ns}})`, legend: '{{pod}}' }],
        },
      ],
    },
    {
      title: 'Clients',
      panels: [
        {
          title: 'Requests / s',
          unit: 'reqps',
          description: 'gRPC requests served, by method.',
          exprs: [{ expr: `sum by (method) (rate(ballast_store_requests_total{${ns}}${r}))`, legend: '{{method}}' }],
        },
        {
          title: 'Request errors / s',
          unit: 'reqps',
          description: 'gRPC requests that did not end OK, by method and code.',
          exprs: [
            {
              expr: orZero(
                `sum by (method, code) (rate(ballast_store_requests_total{${ns}, code!="OK"}${r}))`,
                `sum by (method, code) (rate(ballast_store_requests_total{${ns}}${r}))`,
              ),
              legend: '{{method}} {{code}}',
            },
          ],
        },
        {
          title: 'Request p99',
          unit: 's',
          description: 'The 99th percentile of request latency by method (as the member saw it).',
          exprs: [
            {
              expr: `histogram_quantile(0.99, sum by (method, le) (rate(ballast_store_request_duration_seconds_bucket{${ns}}${r})))`,
              legend: '{{method}}',
            },
          ],
        },
        {
          title: 'Watchers',
          unit: 'count',
          description: 'Watchers open on each member.',
          exprs: [{ expr: `sum by (pod) (etcd_debugging_mvcc_watcher_total{${ns}})`, legend: '{{pod}}' }],
        },
      ],
    },
    {
      title: 'Database',
      panels: [
        {
          title: 'Database size',
          unit: 'bytes',
          description: 'Bytes the key-value state holds (the quota applies to this; compaction releases history).',
          exprs: [{ expr: `max by (pod) (etcd_mvcc_db_total_size_in_bytes{${ns}})`, legend: '{{pod}}' }],
        },
        {
          title: 'Keys',
          unit: 'count',
          description: 'Live keys (deleted and compacted ones excluded).',
          exprs: [{ expr: `max by (pod) (etcd_debugging_mvcc_keys_total{${ns}})`, legend: '{{pod}}' }],
        },
      ],
    },
  ],
};

const sidecar: Dashboard = {
  uid: 'ballast-sidecar',
  title: 'Ballast / Sidecar',
  description:
    'Traffic through ballast sidecars per upstream: requests, errors, latency, retries and hedges with their budget, breakers, outlier ejection, queues and shedding.',
  variables: [
    ...targetVariables('ballast_sidecar_requests_total'),
    { name: 'upstream', label: 'Upstream', metric: `ballast_sidecar_requests_total{${ns}}`, labelName: 'upstream' },
  ],
  rows: [
    {
      title: 'Requests',
      panels: [
        {
          title: 'Requests / s by outcome',
          unit: 'reqps',
          description: "What callers got: a status class, or the sidecar's own refusal (shed, rate_limited, circuit_open, ...).",
          exprs: [
            { expr: `sum by (upstream, outcome) (rate(ballast_sidecar_requests_total{${up}}${r}))`, legend: '{{upstream}} {{outcome}}' },
          ],
        },
        {
          title: 'Error ratio',
          unit: 'percentunit',
          description: 'Share of requests that did not get a 2xx, 3xx or 4xx answer.',
          exprs: [
            {
              expr: orZero(
                `sum by (upstream) (rate(ballast_sidecar_requests_total{${up}, outcome!~"2xx|3xx|4xx"}${r})) / sum by (upstream) (rate(ballast_sidecar_requests_total{${up}}${r}))`,
                `sum by (upstream) (rate(ballast_sidecar_requests_total{${up}}${r}))`,
              ),
              legend: '{{upstream}}',
            },
          ],
        },
        {
          title: 'Latency p50 / p99',
          unit: 's',
          description: "From a request's arrival at the sidecar to the end of its response, retries and queueing included.",
          exprs: [
            {
              expr: `histogram_quantile(0.5, sum by (upstream, le) (rate(ballast_sidecar_request_duration_seconds_bucket{${up}}${r})))`,
              legend: '{{upstream}} p50',
            },
            {
              expr: `histogram_quantile(0.99, sum by (upstream, le) (rate(ballast_sidecar_request_duration_seconds_bucket{${up}}${r})))`,
              legend: '{{upstream}} p99',
            },
          ],
        },
      ],
    },
    {
      title: 'Attempts, retries and hedges',
      panels: [
        {
          title: 'Attempts / s by endpoint',
          unit: 'reqps',
          description: 'Attempts (first tries, retries, hedges) per endpoint and result.',
          exprs: [
            {
              expr: `sum by (upstream, endpoint, result) (rate(ballast_sidecar_attempts_total{${up}}${r}))`,
              legend: '{{endpoint}} {{result}}',
            },
          ],
        },
        {
          title: 'Retries / s by reason',
          unit: 'reqps',
          description: 'Retries and the failure that caused each.',
          exprs: [
            {
              expr: orZero(
                `sum by (upstream, reason) (rate(ballast_sidecar_retries_total{${up}}${r}))`,
                `sum by (upstream) (rate(ballast_sidecar_hedges_total{${up}}${r}))`,
              ),
              legend: '{{upstream}} {{reason}}',
            },
          ],
        },
        {
          title: 'Hedges / s',
          unit: 'reqps',
          description: 'Hedged attempts sent (a second try while the first is still running).',
          exprs: [{ expr: `sum by (upstream) (rate(ballast_sidecar_hedges_total{${up}}${r}))`, legend: '{{upstream}}' }],
        },
        {
          title: 'Retry budget remaining',
          unit: 'count',
          description: 'Extra attempts (retries and hedges) the budget still allows. At 0, failures are returned instead of retried.',
          exprs: [{ expr: `min by (upstream) (ballast_sidecar_retry_budget_remaining{${up}})`, legend: '{{upstream}}' }],
        },
      ],
    },
    {
      title: 'Breakers and ejection',
      panels: [
        {
          title: 'Circuit breakers',
          unit: 'count',
          description: 'Breaker state per endpoint ("*": the upstream\'s own): 0 closed, 1 half-open, 2 open.',
          exprs: [{ expr: `max by (upstream, endpoint) (ballast_sidecar_breaker_state{${up}})`, legend: '{{upstream}} {{endpoint}}' }],
        },
        {
          title: 'Ejected endpoints',
          unit: 'count',
          description: 'Endpoints outlier detection has taken out of rotation.',
          exprs: [{ expr: `sum by (upstream) (ballast_sidecar_endpoint_ejected{${up}})`, legend: '{{upstream}}' }],
        },
        {
          title: 'Ejections / s by reason',
          unit: 'ops',
          description: 'Outlier ejections and their rule.',
          exprs: [
            { expr: `sum by (upstream, reason) (rate(ballast_sidecar_ejections_total{${up}}${r}))`, legend: '{{upstream}} {{reason}}' },
          ],
        },
      ],
    },
    {
      title: 'Queues and shedding',
      panels: [
        {
          title: 'Queued and in flight',
          unit: 'count',
          description: 'Requests waiting for a bulkhead slot, and holding one.',
          exprs: [
            { expr: `sum by (upstream) (ballast_sidecar_queue_length{${up}})`, legend: '{{upstream}} queued' },
            { expr: `sum by (upstream) (ballast_sidecar_inflight{${up}})`, legend: '{{upstream}} in flight' },
          ],
        },
        {
          title: 'Queue wait p99',
          unit: 's',
          description: 'How long requests waited for a bulkhead slot.',
          exprs: [
            {
              expr: `histogram_quantile(0.99, sum by (upstream, le) (rate(ballast_sidecar_queue_wait_seconds_bucket{${up}}${r})))`,
              legend: '{{upstream}}',
            },
          ],
        },
        {
          title: 'Refused / s',
          unit: 'reqps',
          description:
            'Requests the sidecar refused to protect the upstream: shed by the adaptive limit, throttled, rate limited, bulkhead full or queue timeout.',
          exprs: [
            {
              expr: orZero(
                `sum by (upstream, outcome) (rate(ballast_sidecar_requests_total{${up}, outcome=~"shed|throttled|rate_limited|bulkhead_full|queue_timeout|circuit_open"}${r}))`,
                `sum by (upstream) (rate(ballast_sidecar_requests_total{${up}}${r}))`,
              ),
              legend: '{{upstream}} {{outcome}}',
            },
          ],
        },
        {
          title: 'Adaptive concurrency limit',
          unit: 'count',
          description: 'The limit learned for the upstream (sum over its endpoints).',
          exprs: [{ expr: `sum by (upstream) (ballast_sidecar_concurrency_limit{${up}})`, legend: '{{upstream}}' }],
        },
      ],
    },
    {
      title: 'Configuration',
      panels: [
        {
          title: 'Discovery connected',
          unit: 'count',
          kind: 'stat',
          description: "Sidecars connected to the operator's discovery service (the last good configuration serves either way).",
          exprs: [{ expr: `sum(ballast_sidecar_discovery_connected{${ns}})`, legend: 'connected' }],
        },
        {
          title: 'Configuration changes / s',
          unit: 'ops',
          description: 'Configurations applied or refused, by source (file, discovery).',
          exprs: [
            {
              expr: orZero(
                `sum by (source, result) (rate(ballast_sidecar_config_reloads_total{${ns}}${r}))`,
                `sum(ballast_sidecar_discovery_connected{${ns}})`,
              ),
              legend: '{{source}} {{result}}',
            },
          ],
        },
      ],
    },
  ],
};

const operator: Dashboard = {
  uid: 'ballast-operator',
  title: 'Ballast / Operator',
  description:
    'The operator: reconciles, errors and latency, its work queue, leadership, the injection webhook, the discovery service and backups.',
  variables: targetVariables('ballast_operator_leader'),
  rows: [
    {
      title: 'Reconciles',
      panels: [
        {
          title: 'Reconciles / s',
          unit: 'ops',
          description: 'Reconciles by controller and result.',
          exprs: [
            {
              expr: `sum by (controller, result) (rate(ballast_operator_reconcile_total{${ns}}${r}))`,
              legend: '{{controller}} {{result}}',
            },
          ],
        },
        {
          title: 'Reconcile errors / s',
          unit: 'ops',
          description: 'Reconciles that failed (retried with back-off).',
          exprs: [
            { expr: `sum by (controller) (rate(ballast_operator_reconcile_total{${ns}, result="error"}${r}))`, legend: '{{controller}}' },
          ],
        },
        {
          title: 'Reconcile latency p50 / p99',
          unit: 's',
          description: 'Time one reconcile took.',
          exprs: [
            {
              expr: `histogram_quantile(0.5, sum by (controller, le) (rate(ballast_operator_reconcile_duration_seconds_bucket{${ns}}${r})))`,
              legend: '{{controller}} p50',
            },
            {
              expr: `histogram_quantile(0.99, sum by (controller, le) (rate(ballast_operator_reconcile_duration_seconds_bucket{${ns}}${r})))`,
              legend: '{{controller}} p99',
            },
          ],
        },
      ],
    },
    {
      title: 'Work queue and leadership',
      panels: [
        {
          title: 'Queue depth',
          unit: 'count',
          description: "Keys waiting in the leader's work queue.",
          exprs: [{ expr: `max by (pod) (ballast_operator_workqueue_depth{${ns}})`, legend: '{{pod}}' }],
        },
        {
          title: 'Queue wait p99',
          unit: 's',
          description: 'How long a key waited before a worker took it.',
          exprs: [
            {
              expr: `histogram_quantile(0.99, sum by (le) (rate(ballast_operator_workqueue_queue_duration_seconds_bucket{${ns}}${r})))`,
              legend: 'p99',
            },
          ],
        },
        {
          title: 'Leader',
          unit: 'count',
          kind: 'stat',
          description: 'The replica that leads (1); the others stand by with warm caches.',
          exprs: [{ expr: `max by (pod) (ballast_operator_leader{${ns}})`, legend: '{{pod}}' }],
        },
        {
          title: 'Leadership transitions (1h)',
          unit: 'count',
          description: 'Times replicas started or stopped leading.',
          exprs: [{ expr: `sum by (pod) (increase(ballast_operator_leader_transitions_total{${ns}}[1h]))`, legend: '{{pod}}' }],
        },
      ],
    },
    {
      title: 'Webhook and discovery',
      panels: [
        {
          title: 'Admission reviews / s',
          unit: 'reqps',
          description: 'Pods the injection webhook answered, by result.',
          exprs: [{ expr: `sum by (result) (rate(ballast_operator_webhook_requests_total{${ns}}${r}))`, legend: '{{result}}' }],
        },
        {
          title: 'Sidecars connected',
          unit: 'count',
          description: 'Discovery streams open on each replica.',
          exprs: [{ expr: `sum by (pod) (ballast_operator_discovery_streams{${ns}})`, legend: '{{pod}}' }],
        },
        {
          title: 'Snapshots sent and refused / s',
          unit: 'ops',
          description: "Configurations streamed to sidecars, and those a sidecar refused (see the ResiliencePolicy's status).",
          exprs: [
            { expr: `sum(rate(ballast_operator_discovery_snapshots_total{${ns}}${r}))`, legend: 'sent' },
            { expr: `sum(rate(ballast_operator_discovery_nacks_total{${ns}}${r}))`, legend: 'refused' },
          ],
        },
      ],
    },
    {
      title: 'Backups',
      panels: [
        {
          title: 'Age of the newest good backup',
          unit: 's',
          description:
            'Per StoreBackupSchedule: time since its newest successful backup completed (since its creation until one has), next to what its schedule allows (two runs and five minutes); the BallastBackupTooOld alert fires above that.',
          exprs: [
            {
              expr: `time() - max by (schedule, cluster) (ballast_operator_backup_schedule_last_success_timestamp_seconds{${ns}})`,
              legend: '{{schedule}} ({{cluster}})',
            },
            {
              expr: `2 * max by (schedule, cluster) (ballast_operator_backup_schedule_interval_seconds{${ns}}) + 300`,
              legend: '{{schedule}} allowed',
            },
          ],
        },
        {
          title: 'Backups by result (24h)',
          unit: 'count',
          description:
            "StoreBackups that finished in the last day, by cluster and result; a failure's reason is in the StoreBackup's status and Events.",
          exprs: [
            { expr: `sum by (cluster, result) (increase(ballast_operator_backups_total{${ns}}[24h]))`, legend: '{{cluster}} {{result}}' },
          ],
        },
        {
          title: 'Verifications by result (24h)',
          unit: 'count',
          description:
            'Backups restored into a throw-away member and compared by HashKV, by cluster and result: verified, failed (the restore does not hash as the cluster did: BallastBackupVerificationFailed), not_verifiable (nothing to compare with).',
          exprs: [
            {
              expr: `sum by (cluster, result) (increase(ballast_operator_backup_verifications_total{${ns}}[24h]))`,
              legend: '{{cluster}} {{result}}',
            },
          ],
        },
        {
          title: 'Backup duration p50 / p99',
          unit: 's',
          description: 'From the first byte streamed from a follower to the manifest written, per cluster, over the last day.',
          exprs: [
            {
              expr: `histogram_quantile(0.5, sum by (cluster, le) (increase(ballast_operator_backup_duration_seconds_bucket{${ns}}[1d])))`,
              legend: '{{cluster}} p50',
            },
            {
              expr: `histogram_quantile(0.99, sum by (cluster, le) (increase(ballast_operator_backup_duration_seconds_bucket{${ns}}[1d])))`,
              legend: '{{cluster}} p99',
            },
          ],
        },
      ],
    },
  ],
};

export const dashboards: Dashboard[] = [store, sidecar, operator];

/** Every panel queries the data source the dashboard's `datasource` variable picks. */
const datasource = { type: 'prometheus', uid: '${datasource}' };

const units: Record<Panel['unit'], string> = {
  count: Units.Short,
  ops: Units.OpsPerSecond,
  reqps: Units.RequestsPerSecond,
  s: Units.Seconds,
  bytes: Units.BytesIEC,
  percentunit: Units.PercentUnit,
};

function panelBuilder(p: Panel, id: number, width: number): cog.Builder<dashboard.Panel> {
  const queries = p.exprs.map((e, i) =>
    new prometheus.DataqueryBuilder()
      .refId(String.fromCharCode(65 + i))
      .datasource(datasource)
      .expr(e.expr)
      .legendFormat(e.legend)
      .range(),
  );
  if (p.kind === 'stat') {
    const stat = new statPanel.PanelBuilder()
      .id(id)
      .title(p.title)
      .description(p.description)
      .datasource(datasource)
      .height(8)
      .span(width)
      .targets(queries)
      .reduceOptions(new common.ReduceDataOptionsBuilder().calcs(['lastNotNull']).fields('').values(false))
      .colorMode(common.BigValueColorMode.Value)
      .graphMode(common.BigValueGraphMode.None)
      .textMode(common.BigValueTextMode.ValueAndName);
    return stat.unit(units[p.unit]);
  }
  const series = new timeseries.PanelBuilder()
    .id(id)
    .title(p.title)
    .description(p.description)
    .datasource(datasource)
    .height(8)
    .span(width)
    .targets(queries)
    .drawStyle(common.GraphDrawStyle.Line)
    .lineWidth(1)
    .fillOpacity(10)
    .showPoints(common.VisibilityMode.Never)
    .legend(
      new common.VizLegendOptionsBuilder()
        .displayMode(common.LegendDisplayMode.List)
        .placement(common.LegendPlacement.Bottom)
        .showLegend(true),
    )
    .tooltip(new common.VizTooltipOptionsBuilder().mode(common.TooltipDisplayMode.Multi).sort(common.SortOrder.Descending));
  return series.unit(units[p.unit]);
}

/**
 * Grafana's classic dashboard JSON model, built with Grafana's Foundation SDK (typed panels,
 * queries, variables and units). Rows are expanded: each row is followed by its panels at the top
 * level, as Grafana saves an expanded row.
 */
export function buildDashboard(d: Dashboard): dashboard.Dashboard {
  const board = new dashboard.DashboardBuilder(d.title)
    .uid(d.uid)
    .description(d.description)
    .tags(['ballast'])
    .readonly()
    .tooltip(dashboard.DashboardCursorSync.Crosshair)
    .refresh('30s')
    .time({ from: 'now-1h', to: 'now' })
    .timezone('browser')
    .version(1)
    .withVariable(new dashboard.DatasourceVariableBuilder('datasource').label('Data source').type('prometheus'));
  for (const v of d.variables) {
    const query = `label_values(${v.metric}, ${v.labelName})`;
    board.withVariable(
      new dashboard.QueryVariableBuilder(v.name)
        .label(v.label)
        .datasource(datasource)
        .query({ query, refId: 'variable' })
        .definition(query)
        .refresh(dashboard.VariableRefresh.OnTimeRangeChanged)
        .includeAll(true)
        .multi(true)
        .allValue('.*')
        .sort(dashboard.VariableSort.AlphabeticalAsc),
    );
  }
  let id = 1;
  for (const row of d.rows) {
    board.withRow(new dashboard.RowBuilder(row.title).id(id++).collapsed(false));
    for (const p of row.panels) board.withPanel(panelBuilder(p, id++, p.width ?? Math.floor(24 / row.panels.length)));
  }
  return board.build();
}

export function renderDashboard(d: Dashboard): string {
  return `${JSON.stringify(buildDashboard(d), null, 2)}\n`;
}

/**
 * Every query of a built dashboard (the JSON that ships), with Grafana's placeholders filled as
 * "All" would: what a test evaluates on a real Prometheus.
 */
export function panelQueries(model: DashboardModel, rateInterval = '1m'): Array<{ panel: string; expr: string }> {
  return modelPanels(model).flatMap((p) =>
    (p.targets ?? []).flatMap((t) => (t.expr ? [{ panel: `${model.title} / ${p.title}`, expr: fillAll(t.expr, rateInterval) }] : [])),
  );
}
