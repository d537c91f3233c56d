/** Filling a volume for disk-fault tests. */
import { closeSync, openSync, statfsSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

/** Write a file at `path` until its volume has `leaveBytes` free (0: until ENOSPC). */
export function fillVolume(path: string, leaveBytes: number): void {
  const st = statfsSync(dirname(path));
  let want = leaveBytes === 0 ? Number.MAX_SAFE_INTEGER : Math.max(0, st.bavail * st.bsize - leaveBytes);
  const chunk = Buffer.alloc(1 << 20, 0x61);
  const fd = openSync(path, 'w');
  try {
    while (want > 0) {
      const n = Math.min(chunk.length, want);
      try {
        writeSync(fd, chunk, 0, n);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOSPC') break;
        throw err;
      }
      want -= n;
    }
  } finally {
    closeSync(fd);
  }
}
