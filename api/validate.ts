/**
 * Check a value against a {@link Schema} and fill in its defaults: the same schema that becomes
 * the CRD (so the apiserver and the sidecar's config file agree on what is valid). Every problem
 * is reported at once, each with its field path, the value and what is allowed; an unknown
 * field is an error with the nearest known name, because a misspelt option silently ignored is
 * a policy silently off.
 */
import { editDistance } from '../lib/config.ts';
import type { Schema } from './schema.ts';

export interface Problem {
  path: string;
  message: string;
}

export function suggest(name: string, known: readonly string[]): string {
  const best = known.map((k) => ({ k, d: editDistance(name.toLowerCase(), k.toLowerCase()) })).sort((x, y) => x.d - y.d)[0];
  return best && best.d <= Math.max(2, Math.floor(name.length / 3)) ? ` (did you mean "${best.k}"?)` : '';
}

const show = (v: unknown): string => (typeof v === 'string' ? JSON.stringify(v) : (JSON.stringify(v) ?? String(v)));

/** Whether an absent value of this schema gets one from its defaults. */
function fillable(schema: Schema): boolean {
  if (schema.default !== undefined) return true;
  if (schema.type !== 'object' || !schema.properties || (schema.required && schema.required.length > 0)) return false;
  return Object.values(schema.properties).some(fillable);
}

/** The value with defaults filled in, and every problem found. */
export function validate(schema: Schema, value: unknown, path: string, problems: Problem[] = []): { value: unknown; problems: Problem[] } {
  if (value === undefined || value === null) {
    if (schema.default !== undefined) return { value: structuredClone(schema.default), problems };
    // An absent object is filled with its defaults, unless it has required fields (then it is
    // optional as a whole: a parent that needs it says so in its own `required`) or none of its
    // fields has a default (then there is nothing to fill, and `{}` would read as "set").
    if (fillable(schema)) value = {};
    else return { value: undefined, problems };
  }
  const bad = (message: string): { value: unknown; problems: Problem[] } => {
    problems.push({ path, message });
    return { value, problems };
  };
  if (schema['x-kubernetes-int-or-string']) {
    if (typeof value !== 'string' && typeof value !== 'number') return bad(`must be a number or a string, got ${show(value)}`);
  } else {
    switch (schema.type) {
      case 'integer':
        if (typeof value !== 'number' || !Number.isInteger(value)) return bad(`must be a whole number, got ${show(value)}`);
        break;
      case 'number':
        if (typeof value !== 'number' || !Number.isFinite(value)) return bad(`must be a number, got ${show(value)}`);
        break;
      case 'string':
        if (typeof value !== 'string') return bad(`must be a string, got ${show(value)}`);
        break;
      case 'boolean':
        if (typeof value !== 'boolean') return bad(`must be true or false, got ${show(value)}`);
        break;
      case 'array':
        if (!Array.isArray(value)) return bad(`must be a list, got ${show(value)}`);
        return { value: value.map((x, i) => validate(schema.items as Schema, x, `${path}[${i}]`, problems).value), problems };
      case 'object': {
        if (typeof value !== 'object' || Array.isArray(value)) return bad(`must be a mapping (key: value), got ${show(value)}`);
        const out: Record<string, unknown> = {};
        const v = value as Record<string, unknown>;
        if (schema.properties) {
          const known = Object.keys(schema.properties);
          for (const k of Object.keys(v))
            if (!known.includes(k))
              problems.push({ path: `${path}.${k}`, message: `unknown field${suggest(k, known)}; known fields: ${known.join(', ')}` });
          for (const [k, sub] of Object.entries(schema.properties)) {
            const r = validate(sub, v[k], `${path}.${k}`, problems).value;
            if (r !== undefined) out[k] = r;
          }
          for (const k of schema.required ?? []) if (out[k] === undefined) problems.push({ path: `${path}.${k}`, message: 'is required' });
          return { value: out, problems };
        }
        if (schema.additionalProperties) {
          for (const [k, x] of Object.entries(v)) out[k] = validate(schema.additionalProperties, x, `${path}.${k}`, problems).value;
          return { value: out, problems };
        }
        return { value, problems };
      }
    }
  }
  if (schema.enum && !schema.enum.includes(value as string))
    return bad(`must be one of ${schema.enum.join(', ')}, got ${show(value)}${suggest(String(value), schema.enum)}`);
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum) return bad(`must be at least ${schema.minimum}, got ${value}`);
    if (schema.maximum !== undefined && value > schema.maximum) return bad(`must be at most ${schema.maximum}, got ${value}`);
  }
  if (typeof value === 'string') {
    if (schema.pattern && !new RegExp(schema.pattern).test(value))
      return bad(`${show(value)} does not match ${schema.pattern}${schema.description ? ` (${schema.description})` : ''}`);
    if (schema.maxLength !== undefined && value.length > schema.maxLength) return bad(`must be at most ${schema.maxLength} characters`);
  }
  return { value, problems };
}
