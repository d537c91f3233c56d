/**
 * A small vocabulary for structural OpenAPI v3 schemas, so the CRDs are written once, in
 * TypeScript, with a description on every field (what `kubectl explain` prints), and `crds/`
 * is generated from them (`npm run gen:crds`; a test fails when the committed files differ).
 */

export interface Schema {
  type?: 'object' | 'array' | 'string' | 'integer' | 'boolean' | 'number';
  description: string;
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  additionalProperties?: Schema;
  enum?: string[];
  default?: unknown;
  minimum?: number;
  maximum?: number;
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  format?: string;
  'x-kubernetes-int-or-string'?: true;
  'x-kubernetes-preserve-unknown-fields'?: true;
  'x-kubernetes-validations'?: Array<{ rule: string; message: string; reason?: string; fieldPath?: string }>;
  'x-kubernetes-list-type'?: 'atomic' | 'map' | 'set';
  'x-kubernetes-list-map-keys'?: string[];
}

type Extra = Omit<Schema, 'type' | 'description'>;

/** Builders of OpenAPI v3 schema nodes (the CRDs' and the sidecar's configuration schema). */
export const openapi = {
  object: (description: string, properties: Record<string, Schema>, extra: Extra = {}): Schema => ({
    type: 'object',
    description,
    properties,
    ...extra,
  }),
  string: (description: string, extra: Extra = {}): Schema => ({ type: 'string', description, ...extra }),
  int: (description: string, extra: Extra = {}): Schema => ({ type: 'integer', description, ...extra }),
  bool: (description: string, extra: Extra = {}): Schema => ({ type: 'boolean', description, ...extra }),
  array: (description: string, items: Schema, extra: Extra = {}): Schema => ({ type: 'array', description, items, ...extra }),
  map: (description: string, values: Schema = { type: 'string', description: 'value' }): Schema => ({
    type: 'object',
    description,
    additionalProperties: values,
  }),
  /** A Kubernetes quantity ("10Gi", "512Mi"): never negative. */
  quantity: (description: string, extra: Extra = {}): Schema => ({
    description,
    'x-kubernetes-int-or-string': true,
    pattern: '^(\\+)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$',
    ...extra,
  }),
  /** A Kubernetes type kept as the API defines it (affinity, tolerations, ...); the apiserver prunes nothing inside. */
  opaque: (description: string, type: 'object' | 'array' = 'object'): Schema =>
    type === 'array'
      ? {
          type: 'array',
          description,
          items: { type: 'object', description: 'an item, as the Kubernetes API defines it', 'x-kubernetes-preserve-unknown-fields': true },
        }
      : { type: 'object', description, 'x-kubernetes-preserve-unknown-fields': true },
};

/** The standard condition shape (metav1.Condition). */
export const conditionsSchema = openapi.array(
  "The latest observations of the resource's state (Ready, Available, Progressing, Degraded).",
  openapi.object(
    'One condition.',
    {
      type: openapi.string('The condition type, e.g. Ready.'),
      status: openapi.string('True, False or Unknown.', { enum: ['True', 'False', 'Unknown'] }),
      reason: openapi.string('A CamelCase word for why the condition is in its status.'),
      message: openapi.string('What happened, and what to do about it, for a person to read.'),
      observedGeneration: openapi.int('The .metadata.generation this condition was set for.'),
      lastTransitionTime: openapi.string('When the status last changed.', { format: 'date-time' }),
    },
    { required: ['type', 'status'] },
  ),
  { 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'] },
);

export interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'date' | 'boolean';
  jsonPath: string;
  description?: string;
  priority?: number;
}

export interface CrdDefinition {
  group: string;
  kind: string;
  plural: string;
  singular: string;
  shortNames: string[];
  categories: string[];
  version: string;
  description: string;
  spec: Schema;
  status: Schema;
  columns: PrinterColumn[];
  scale?: { specReplicasPath: string; statusReplicasPath: string; labelSelectorPath: string };
}

/** The CustomResourceDefinition object for one definition. */
export function crd(d: CrdDefinition): Record<string, unknown> {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: {
      name: `${d.plural}.${d.group}`,
      labels: { 'app.kubernetes.io/part-of': 'ballast' },
      annotations: { 'argocd.argoproj.io/sync-wave': '-10' },
    },
    spec: {
      group: d.group,
      names: {
        kind: d.kind,
        listKind: `${d.kind}List`,
        plural: d.plural,
        singular: d.singular,
        shortNames: d.shortNames,
        categories: d.categories,
      },
      scope: 'Namespaced',
      versions: [
        {
          name: d.version,
          served: true,
          storage: true,
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description: d.description,
              properties: {
                apiVersion: openapi.string('The versioned schema of this representation of an object.'),
                kind: openapi.string('The REST resource this object represents.'),
                metadata: { type: 'object' },
                spec: d.spec,
                status: d.status,
              },
              required: ['spec'],
            },
          },
          subresources: { status: {}, ...(d.scale ? { scale: d.scale } : {}) },
          additionalPrinterColumns: d.columns,
        },
      ],
    },
  };
}
