/**
 * TLS for client and peer traffic, with etcd's flags, reloading certificates when their files
 * change (so a rotated certificate takes effect without a restart).
 */
import * as grpc from '@grpc/grpc-js';
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
 * gRPC server credentials that re-read the files every few seconds (grpc-js's file watcher).
 * Note: grpc-js exports createCertificateProviderServerCredentials with its first two
 * parameters named (ca, identity) but hands them to a constructor taking (identity, ca); we pass
 * them in the order the constructor uses, and a TLS test proves the handshake.
 */
export function grpcServerCredentials(t: TlsFiles): grpc.ServerCredentials {
  const identity = new grpc.experimental.FileWatcherCertificateProvider({
    certificateFile: t.certFile,
    privateKeyFile: t.keyFile,
    refreshIntervalMs: certRefreshMs,
  });
  const ca =
    t.clientCertAuth && t.trustedCaFile
      ? new grpc.experimental.FileWatcherCertificateProvider({ caCertificateFile: t.trustedCaFile, refreshIntervalMs: certRefreshMs })
      : null;
  const create = grpc.experimental.createCertificateProviderServerCredentials as unknown as (
    identity: grpc.experimental.CertificateProvider,
    ca: grpc.experimental.CertificateProvider | null,
    requireClientCert: boolean,
  ) => grpc.ServerCredentials;
  return create(identity, ca, t.clientCertAuth);
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
