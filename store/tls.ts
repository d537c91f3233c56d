/**
 * TLS for client and peer traffic, with etcd's flags, reloading certificates when their files
 * change (so a rotated certificate takes effect without a restart).
 */
import { readFileSync, statSync } from 'node:fs';
import type { ConnectionOptions, SecureContextOptions } from 'node:tls';
import { BallastError } from '../lib/errors.ts';

export interface TlsFiles {
  certFile: string;
  keyFile: string;
  /** CA that signs the other side's certificate (and, with clientCertAuth, the clients'). */
  trustedCaFile: string;
  /** Require and verify a client certificate. */
  clientCertAuth: boolean;
}

/** How often certificate files are checked for changes. */
export const certRefreshMs = 5000;

function read(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (cause) {
    throw new BallastError('BALLAST_ERR_CONFIG_INVALID', `${what} ${path}: cannot read it (${(cause as Error).message})`, { cause });
  }
}

/** Check the files exist and read now, so a bad path fails at start, naming the flag. */
export function checkTlsFiles(t: TlsFiles, prefix: '' | 'peer-'): void {
  read(t.certFile, `--${prefix}cert-file`);
  read(t.keyFile, `--${prefix}key-file`);
  if (t.trustedCaFile) read(t.trustedCaFile, `--${prefix}trusted-ca-file`);
}

/**
 * Options for the client API's TLS server (lib/grpc-server.ts), read from the files now; the
 * server reads them again every {@link certRefreshMs}, so a rotated certificate is served
 * without a restart. A client certificate is required and verified against the trusted CA only
 * with --client-cert-auth, as etcd.
 */
export function clientServerContext(t: TlsFiles): SecureContextOptions & { requestCert: boolean; rejectUnauthorized: boolean } {
  return {
    cert: read(t.certFile, '--cert-file'),
    key: read(t.keyFile, '--key-file'),
    ...(t.clientCertAuth && t.trustedCaFile ? { ca: read(t.trustedCaFile, '--trusted-ca-file') } : {}),
    requestCert: t.clientCertAuth,
    rejectUnauthorized: t.clientCertAuth,
  };
}

/** Options for a peer TLS server, read from the files now. */
export function peerServerContext(t: TlsFiles): SecureContextOptions & { requestCert: boolean; rejectUnauthorized: boolean } {
  return {
    cert: read(t.certFile, '--peer-cert-file'),
    key: read(t.keyFile, '--peer-key-file'),
    ...(t.trustedCaFile ? { ca: read(t.trustedCaFile, '--peer-trusted-ca-file') } : {}),
    requestCert: t.clientCertAuth,
    rejectUnauthorized: t.clientCertAuth,
  };
}

/** Options for dialling a peer, read from the files at each dial (so a reconnect uses new ones). */
export function peerClientOptions(t: TlsFiles, host: string): ConnectionOptions {
  return {
    cert: read(t.certFile, '--peer-cert-file'),
    key: read(t.keyFile, '--peer-key-file'),
    ...(t.trustedCaFile ? { ca: read(t.trustedCaFile, '--peer-trusted-ca-file') } : {}),
    servername: host,
    rejectUnauthorized: t.trustedCaFile !== '',
  };
}

/** Call `onChange` when any of the files' modification time or size changes. */
export function watchFiles(paths: string[], onChange: () => void, every = certRefreshMs): { stop(): void } {
  const sig = () =>
    paths
      .map((p) => {
        try {
          const s = statSync(p);
          return `${s.mtimeMs}:${s.size}`;
        } catch {
          return 'missing';
        }
      })
      .join('|');
  let last = sig();
  const t = setInterval(() => {
    const now = sig();
    if (now !== last) {
      last = now;
      onChange();
    }
  }, every);
  t.unref();
  return { stop: () => clearInterval(t) };
}
