/**
 * The Grafana dashboards, defined once here and written as JSON by `npm run gen:observability`
 * into dashboards/*.json (import them into Grafana) and into the chart, which ships them as
 * ConfigMaps labelled `grafana_dashboard: "1"` for Grafana's dashboard sidecar.
 *
 * Every panel's query is evaluated against a real Prometheus scraping a running cluster in
 * test/e2e/observe.test.ts: a query that errors or returns nothing fails that test. Panels that
 * count rare events (errors, refusals) add `or <the same selection> * 0`, so a quiet system
 * shows 0, not "No data".
 *
 * Labels: `namespace` and `pod` come from Prometheus' Kubernetes discovery (ServiceMonitor and
 * PodMonitor set them, as does the chart's scrape example in docs/observability.md).
 */

export interface Panel {
  title: string;
  description: string;
  /** PromQL; `$__rate_interval` and the dashboard's variables may appear. */
  exprs: Array<{ expr: string; legend: string }>;
  unit?: string;
  kind?: 'timeseries' | 'stat';
  /** Width in grid columns (24 per row); 8 by default. */
  width?: number;
}

export interface Variable {
  name: string;
  label: string;
  /** Metric and label for Grafana's label_values(). */
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

const ns = 'namespace=~"$namespace"';
const up = `${ns}, upstream=~"$upstream"`;
const r = '[$__rate_interval]';
/** `sel` is a rate, or 0 for every series of `base` when nothing happened. */
const orZero = (sel: string, base: string) => `(${sel}) or (${base} * 0)`;

const store: Dashboard = {
  uid: 'ballast-store',
  title: 'Ballast / Store',
  description: 'Members of ballast store clusters: leadership, consensus, disk, apply, watchers and the database. Metric names follow etcd\'s, so etcd\'s own dashboards work too.',
  variables: [{ name: 'namespace', label: 'Namespace', metric: 'etcd_server_has_leader', labelName: 'namespace' }],
  rows: [
    {
      title: 'Leadership',
      panels: [
        { title: 'Members with a leader', kind: 'stat', description: 'Members that know a leader, per namespace. Fewer than the members running means a partition or an election in progress.', exprs: [{ expr: `sum by (namespace) (etcd_server_has_leader{${ns}})`, legend: '{{namespace}}' }] },
        { title: 'Leader', kind: 'stat', description: 'The member that leads (1).', exprs: [{ expr: `max by (namespace, pod) (etcd_server_is_leader{${ns}}) == 1`, legend: '{{namespace}}/{{pod}}' }] },
        { title: 'Leader changes (1h)', description: 'Leader changes each member saw in the last hour. Frequent changes point at slow disks, CPU starvation or a flaky network.', exprs: [{ expr: `max by (namespace) (increase(etcd_server_leader_changes_seen_total{${ns}}[1h]))`, legend: '{{namespace}}' }] },
      ],
    },
    {
      title: 'Consensus',
      panels: [
        { title: 'Proposals committed / s', description: 'Raft proposals committed per second, per member.', exprs: [{ expr: `sum by (pod) (rate(etcd_server_proposals_committed_total{${ns}}${r}))`, legend: '{{pod}}' }] },
        { title: 'Proposals pending', description: 'Proposals waiting to commit. A growing number means the leader cannot reach a quorum fast enough.', exprs: [{ expr: `sum by (pod) (etcd_server_proposals_pending{${ns}})`, legend: '{{pod}}' }] },
        { title: 'Proposals failed / s', description: 'Proposals that failed (usually a leader change during the proposal).', exprs: [{ expr: `sum by (pod) (rate(etcd_server_proposals_failed_total{${ns}}${r}))`, legend: '{{pod}}' }] },
      ],
    },
    {
      title: 'Disk and apply',
      panels: [
        { title: 'WAL fsync p99', unit: 's', description: 'The 99th percentile of the write-ahead log\'s fsync. Above 10 ms the disk is the cluster\'s bottleneck; above 1 s elections follow.', exprs: [{ expr: `histogram_quantile(0.99, sum by (pod, le) (rate(etcd_disk_wal_fsync_duration_seconds_bucket{${ns}}${r})))`, legend: '{{pod}}' }] },
        { title: 'Apply p99', unit: 's', description: 'Time to apply one batch of committed entries to the key-value state (watchers notified).', exprs: [{ expr: `histogram_quantile(0.99, sum by (pod, le) (rate(ballast_store_apply_duration_seconds_bucket{${ns}}${r})))`, legend: '{{pod}}' }] },
        { title: 'Apply lag', description: 'Committed entries a member has not applied yet. Readiness fails above a small lag.', exprs: [{ expr: `max by (pod) (ballast_store_apply_lag_entries{${ns}})`, legend: '{{pod}}' }] },
      ],
    },
    {
      title: 'Clients',
      panels: [
        { title: 'Requests / s', description: 'gRPC requests served, by method.', exprs: [{ expr: `sum by (method) (rate(ballast_store_requests_total{${ns}}${r}))`, legend: '{{method}}' }] },
        { title: 'Request errors / s', description: 'gRPC requests that did not end OK, by method and code.', exprs: [{ expr: orZero(`sum by (method, code) (rate(ballast_store_requests_total{${ns}, code!="OK"}${r}))`, `sum by (method, code) (rate(ballast_store_requests_total{${ns}}${r}))`), legend: '{{method}} {{code}}' }] },
        { title: 'Request p99', unit: 's', description: 'The 99th percentile of request latency by method (as the member saw it).', exprs: [{ expr: `histogram_quantile(0.99, sum by (method, le) (rate(ballast_store_request_duration_seconds_bucket{${ns}}${r})))`, legend: '{{method}}' }] },
        { title: 'Watchers', description: 'Watchers open on each member.', exprs: [{ expr: `sum by (pod) (etcd_debugging_mvcc_watcher_total{${ns}})`, legend: '{{pod}}' }] },
      ],
    },
    {
      title: 'Database',
      panels: [
        { title: 'Database size', unit: 'bytes', description: 'Bytes the key-value state holds (the quota applies to this; compaction releases history).', exprs: [{ expr: `max by (pod) (etcd_mvcc_db_total_size_in_bytes{${ns}})`, legend: '{{pod}}' }] },
        { title: 'Keys', description: 'Live keys (deleted and compacted ones excluded).', exprs: [{ expr: `max by (pod) (etcd_debugging_mvcc_keys_total{${ns}})`, legend: '{{pod}}' }] },
      ],
    },
  ],
};

const sidecar: Dashboard = {
  uid: 'ballast-sidecar',
  title: 'Ballast / Sidecar',
  description: 'Traffic through ballast sidecars per upstream: requests, errors, latency, retries and hedges with their budget, breakers, outlier ejection, queues and shedding.',
  variables: [
    { name: 'namespace', label: 'Namespace', metric: 'ballast_sidecar_requests_total', labelName: 'namespace' },
    { name: 'upstream', label: 'Upstream', metric: 'ballast_sidecar_requests_total', labelName: 'upstream' },
  ],
  rows: [
    {
      title: 'Requests',
      panels: [
        { title: 'Requests / s by outcome', description: 'What callers got: a status class, or the sidecar\'s own refusal (shed, rate_limited, circuit_open, ...).', exprs: [{ expr: `sum by (upstream, outcome) (rate(ballast_sidecar_requests_total{${up}}${r}))`, legend: '{{upstream}} {{outcome}}' }] },
        { title: 'Error ratio', unit: 'percentunit', description: 'Share of requests that did not get a 2xx, 3xx or 4xx answer.', exprs: [{ expr: orZero(`sum by (upstream) (rate(ballast_sidecar_requests_total{${up}, outcome!~"2xx|3xx|4xx"}${r})) / sum by (upstream) (rate(ballast_sidecar_requests_total{${up}}${r}))`, `sum by (upstream) (rate(ballast_sidecar_requests_total{${up}}${r}))`), legend: '{{upstream}}' }] },
        { title: 'Latency p50 / p99', unit: 's', description: 'From a request\'s arrival at the sidecar to the end of its response, retries and queueing included.', exprs: [
          { expr: `histogram_quantile(0.5, sum by (upstream, le) (rate(ballast_sidecar_request_duration_seconds_bucket{${up}}${r})))`, legend: '{{upstream}} p50' },
          { expr: `histogram_quantile(0.99, sum by (upstream, le) (rate(ballast_sidecar_request_duration_seconds_bucket{${up}}${r})))`, legend: '{{upstream}} p99' },
        ] },
      ],
    },
    {
      title: 'Attempts, retries and hedges',
      panels: [
        { title: 'Attempts / s by endpoint', description: 'Attempts (first tries, retries, hedges) per endpoint and result.', exprs: [{ expr: `sum by (upstream, endpoint, result) (rate(ballast_sidecar_attempts_total{${up}}${r}))`, legend: '{{endpoint}} {{result}}' }] },
        { title: 'Retries / s by reason', description: 'Retries and the failure that caused each.', exprs: [{ expr: orZero(`sum by (upstream, reason) (rate(ballast_sidecar_retries_total{${up}}${r}))`, `sum by (upstream) (rate(ballast_sidecar_hedges_total{${up}}${r}))`), legend: '{{upstream}} {{reason}}' }] },
        { title: 'Hedges / s', description: 'Hedged attempts sent (a second try while the first is still running).', exprs: [{ expr: `sum by (upstream) (rate(ballast_sidecar_hedges_total{${up}}${r}))`, legend: '{{upstream}}' }] },
        { title: 'Retry budget remaining', description: 'Extra attempts (retries and hedges) the budget still allows. At 0, failures are returned instead of retried.', exprs: [{ expr: `min by (upstream) (ballast_sidecar_retry_budget_remaining{${up}})`, legend: '{{upstream}}' }] },
      ],
    },
    {
      title: 'Breakers and ejection',
      panels: [
        { title: 'Circuit breakers', description: 'Breaker state per endpoint ("*": the upstream\'s own): 0 closed, 1 half-open, 2 open.', exprs: [{ expr: `max by (upstream, endpoint) (ballast_sidecar_breaker_state{${up}})`, legend: '{{upstream}} {{endpoint}}' }] },
        { title: 'Ejected endpoints', description: 'Endpoints outlier detection has taken out of rotation.', exprs: [{ expr: `sum by (upstream) (ballast_sidecar_endpoint_ejected{${up}})`, legend: '{{upstream}}' }] },
        { title: 'Ejections / s by reason', description: 'Outlier ejections and their rule.', exprs: [{ expr: `sum by (upstream, reason) (rate(ballast_sidecar_ejections_total{${up}}${r}))`, legend: '{{upstream}} {{reason}}' }] },
      ],
    },
    {
      title: 'Queues and shedding',
      panels: [
        { title: 'Queued and in flight', description: 'Requests waiting for a bulkhead slot, and holding one.', exprs: [
          { expr: `sum by (upstream) (ballast_sidecar_queue_length{${up}})`, legend: '{{upstream}} queued' },
          { expr: `sum by (upstream) (ballast_sidecar_inflight{${up}})`, legend: '{{upstream}} in flight' },
        ] },
        { title: 'Queue wait p99', unit: 's', description: 'How long requests waited for a bulkhead slot.', exprs: [{ expr: `histogram_quantile(0.99, sum by (upstream, le) (rate(ballast_sidecar_queue_wait_seconds_bucket{${up}}${r})))`, legend: '{{upstream}}' }] },
        { title: 'Refused / s', description: 'Requests the sidecar refused to protect the upstream: shed by the adaptive limit, throttled, rate limited, bulkhead full or queue timeout.', exprs: [{ expr: orZero(`sum by (upstream, outcome) (rate(ballast_sidecar_requests_total{${up}, outcome=~"shed|throttled|rate_limited|bulkhead_full|queue_timeout|circuit_open"}${r}))`, `sum by (upstream) (rate(ballast_sidecar_requests_total{${up}}${r}))`), legend: '{{upstream}} {{outcome}}' }] },
        { title: 'Adaptive concurrency limit', description: 'The limit learned for the upstream (sum over its endpoints).', exprs: [{ expr: `sum by (upstream) (ballast_sidecar_concurrency_limit{${up}})`, legend: '{{upstream}}' }] },
      ],
    },
    {
      title: 'Configuration',
      panels: [
        { title: 'Discovery connected', kind: 'stat', description: 'Sidecars connected to the operator\'s discovery service (the last good configuration serves either way).', exprs: [{ expr: `sum(ballast_sidecar_discovery_connected{${ns}})`, legend: 'connected' }] },
        { title: 'Configuration changes / s', description: 'Configurations applied or refused, by source (file, discovery).', exprs: [{ expr: orZero(`sum by (source, result) (rate(ballast_sidecar_config_reloads_total{${ns}}${r}))`, `sum(ballast_sidecar_discovery_connected{${ns}})`), legend: '{{source}} {{result}}' }] },
      ],
    },
  ],
};

const operator: Dashboard = {
  uid: 'ballast-operator',
  title: 'Ballast / Operator',
  description: 'The operator: reconciles, errors and latency, its work queue, leadership, the injection webhook and the discovery service.',
  variables: [{ name: 'namespace', label: 'Namespace', metric: 'ballast_operator_leader', labelName: 'namespace' }],
  rows: [
    {
      title: 'Reconciles',
      panels: [
        { title: 'Reconciles / s', description: 'Reconciles by controller and result.', exprs: [{ expr: `sum by (controller, result) (rate(ballast_operator_reconcile_total{${ns}}${r}))`, legend: '{{controller}} {{result}}' }] },
        { title: 'Reconcile errors / s', description: 'Reconciles that failed (retried with back-off).', exprs: [{ expr: `sum by (controller) (rate(ballast_operator_reconcile_total{${ns}, result="error"}${r}))`, legend: '{{controller}}' }] },
        { title: 'Reconcile latency p50 / p99', unit: 's', description: 'Time one reconcile took.', exprs: [
          { expr: `histogram_quantile(0.5, sum by (controller, le) (rate(ballast_operator_reconcile_duration_seconds_bucket{${ns}}${r})))`, legend: '{{controller}} p50' },
          { expr: `histogram_quantile(0.99, sum by (controller, le) (rate(ballast_operator_reconcile_duration_seconds_bucket{${ns}}${r})))`, legend: '{{controller}} p99' },
        ] },
      ],
    },
    {
      title: 'Work queue and leadership',
      panels: [
        { title: 'Queue depth', description: 'Keys waiting in the leader\'s work queue.', exprs: [{ expr: `max by (pod) (ballast_operator_workqueue_depth{${ns}})`, legend: '{{pod}}' }] },
        { title: 'Queue wait p99', unit: 's', description: 'How long a key waited before a worker took it.', exprs: [{ expr: `histogram_quantile(0.99, sum by (le) (rate(ballast_operator_workqueue_queue_duration_seconds_bucket{${ns}}${r})))`, legend: 'p99' }] },
        { title: 'Leader', kind: 'stat', description: 'The replica that leads (1); the others stand by with warm caches.', exprs: [{ expr: `max by (pod) (ballast_operator_leader{${ns}})`, legend: '{{pod}}' }] },
        { title: 'Leadership transitions (1h)', description: 'Times replicas started or stopped leading.', exprs: [{ expr: `sum by (pod) (increase(ballast_operator_leader_transitions_total{${ns}}[1h]))`, legend: '{{pod}}' }] },
      ],
    },
    {
      title: 'Webhook and discovery',
      panels: [
        { title: 'Admission reviews / s', description: 'Pods the injection webhook answered, by result.', exprs: [{ expr: `sum by (result) (rate(ballast_operator_webhook_requests_total{${ns}}${r}))`, legend: '{{result}}' }] },
        { title: 'Sidecars connected', description: 'Discovery streams open on each replica.', exprs: [{ expr: `sum by (pod) (ballast_operator_discovery_streams{${ns}})`, legend: '{{pod}}' }] },
        { title: 'Snapshots sent and refused / s', description: 'Configurations streamed to sidecars, and those a sidecar refused (see the ResiliencePolicy\'s status).', exprs: [
          { expr: `sum(rate(ballast_operator_discovery_snapshots_total{${ns}}${r}))`, legend: 'sent' },
          { expr: `sum(rate(ballast_operator_discovery_nacks_total{${ns}}${r}))`, legend: 'refused' },
        ] },
      ],
    },
  ],
};

export const dashboards: Dashboard[] = [store, sidecar, operator];

const datasource = { type: 'prometheus', uid: '${datasource}' };

/** Grafana's dashboard JSON model (schema 39). */
export function renderDashboard(d: Dashboard): string {
  const panels: unknown[] = [];
  let id = 1;
  let y = 0;
  for (const row of d.rows) {
    panels.push({ id: id++, type: 'row', title: row.title, collapsed: false, gridPos: { h: 1, w: 24, x: 0, y }, panels: [] });
    y += 1;
    let x = 0;
    for (const p of row.panels) {
      const w = p.width ?? Math.floor(24 / row.panels.length);
      if (x + w > 24) {
        x = 0;
        y += 8;
      }
      const kind = p.kind ?? 'timeseries';
      panels.push({
        id: id++, type: kind, title: p.title, description: p.description, datasource,
        gridPos: { h: 8, w, x, y },
        targets: p.exprs.map((e, i) => ({ refId: String.fromCharCode(65 + i), datasource, expr: e.expr, legendFormat: e.legend, range: true })),
        fieldConfig: { defaults: { ...(p.unit ? { unit: p.unit } : {}), ...(kind === 'timeseries' ? { custom: { drawStyle: 'line', lineWidth: 1, fillOpacity: 10, showPoints: 'never' } } : {}) }, overrides: [] },
        options: kind === 'stat' ? { reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false }, colorMode: 'value', graphMode: 'none', textMode: 'value_and_name' } : { legend: { displayMode: 'list', placement: 'bottom', showLegend: true }, tooltip: { mode: 'multi', sort: 'desc' } },
      });
      x += w;
    }
    y += 8;
  }
  const model = {
    uid: d.uid, title: d.title, description: d.description, tags: ['ballast'], editable: true, graphTooltip: 1,
    schemaVersion: 39, version: 1, refresh: '30s', time: { from: 'now-1h', to: 'now' }, timezone: 'browser',
    templating: {
      list: [
        { name: 'datasource', label: 'Data source', type: 'datasource', query: 'prometheus', current: {}, hide: 0 },
        ...d.variables.map((v) => ({
          name: v.name, label: v.label, type: 'query', datasource, refresh: 2, includeAll: true, multi: true, allValue: '.*', current: {}, sort: 1,
          definition: `label_values(${v.metric}, ${v.labelName})`, query: { query: `label_values(${v.metric}, ${v.labelName})`, refId: 'variable' },
        })),
      ],
    },
    annotations: { list: [] },
    panels,
  };
  return `${JSON.stringify(model, null, 2)}\n`;
}

/** Every query of a dashboard with Grafana's placeholders filled as "All" would (for tests). */
export function panelQueries(d: Dashboard, rateInterval = '1m'): Array<{ panel: string; expr: string }> {
  const fill = (e: string) => e.replaceAll('$__rate_interval', rateInterval).replace(/\$([a-z]+)/g, '.*');
  return d.rows.flatMap((row) => row.panels.flatMap((p) => p.exprs.map((e) => ({ panel: `${d.title} / ${p.title}`, expr: fill(e.expr) }))));
}
