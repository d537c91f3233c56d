/**
 * Which backups a schedule's retention lets go (pure). The same rule runs where the objects are
 * (the backup Job prunes the bucket after a good backup) and where their records are (the
 * operator deletes the StoreBackups), so both keep the same set.
 *
 * A successful backup goes when more than `keep` newer successful ones exist, or when it
 * completed more than `maxAgeMs` ago; the newest successful backup never goes, whatever its age:
 * a schedule that stopped succeeding keeps the last good backup it has. Failed backups hold no
 * data; the newest `keepFailed` stay for their reasons.
 */
export interface Retention {
  /** Successful backups to keep (at least 1). */
  keep?: number | undefined;
  /** Successful backups older than this (completed before now − maxAgeMs) go. */
  maxAgeMs?: number | undefined;
  /** Failed backups to keep (their status says why); default 3. */
  keepFailed?: number | undefined;
}

export interface RetainedBackup {
  name: string;
  /** When it completed (ms since the epoch); for a failed one, when it was created. */
  at: number;
  ok: boolean;
}

/** The names to delete, newest first. Backups still running are never passed in. */
export function expired(backups: readonly RetainedBackup[], r: Retention, now: number): string[] {
  const newestFirst = [...backups].sort((a, b) => b.at - a.at || b.name.localeCompare(a.name));
  const out: string[] = [];
  let good = 0;
  let failed = 0;
  for (const b of newestFirst) {
    if (b.ok) {
      good++;
      if (good === 1) continue;
      if ((r.keep !== undefined && good > Math.max(1, r.keep)) || (r.maxAgeMs !== undefined && b.at < now - r.maxAgeMs)) out.push(b.name);
    } else {
      failed++;
      if (failed > (r.keepFailed ?? 3)) out.push(b.name);
    }
  }
  return out;
}

const units: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "30d", "168h", "90m": milliseconds; undefined when it is not one of those. */
export function parseAge(s: string): number | undefined {
  const m = /^(\d+)(s|m|h|d)$/.exec(s.trim());
  return m ? Number(m[1]) * (units[m[2] as string] as number) : undefined;
}

/** The names of a schedule's backups: `<schedule>-<14 digits>` (its UTC time, YYYYMMDDhhmmss). */
export const backupNamePattern = (schedule: string) => new RegExp(`^${schedule.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}-\\d{14}$`);
