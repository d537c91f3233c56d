/** Test certificates made with openssl: a CA, server certificates for 127.0.0.1, a client certificate. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const run = (args: string[], cwd: string) => execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });

export interface TestCerts {
  dir: string;
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** Issue a fresh server certificate over the same files; returns its serial (hex). */
  rotateServer(): string;
}

export function makeCerts(): TestCerts {
  const dir = mkdtempSync(join(tmpdir(), 'ballast-certs-'));
  run(
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      'ca.key',
      '-out',
      'ca.crt',
      '-days',
      '2',
      '-subj',
      '/CN=ballast-test-ca',
    ],
    dir,
  );
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n');
  writeFileSync(join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\n');
  const issue = (name: string, ext: string): string => {
    run(
      [
        'req',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        `${name}.key.new`,
        '-out',
        `${name}.csr`,
        '-subj',
        `/CN=${name}`,
      ],
      dir,
    );
    run(
      [
        'x509',
        '-req',
        '-in',
        `${name}.csr`,
        '-CA',
        'ca.crt',
        '-CAkey',
        'ca.key',
        '-CAcreateserial',
        '-out',
        `${name}.crt.new`,
        '-days',
        '2',
        '-extfile',
        ext,
      ],
      dir,
    );
    // Key first, then certificate: a reader never pairs a new certificate with an old key for long.
    execFileSync('mv', [`${name}.key.new`, `${name}.key`], { cwd: dir });
    execFileSync('mv', [`${name}.crt.new`, `${name}.crt`], { cwd: dir });
    return run(['x509', '-in', `${name}.crt`, '-noout', '-serial'], dir)
      .toString()
      .trim()
      .replace('serial=', '');
  };
  issue('server', 'server.ext');
  issue('client', 'client.ext');
  return {
    dir,
    ca: join(dir, 'ca.crt'),
    serverCert: join(dir, 'server.crt'),
    serverKey: join(dir, 'server.key'),
    clientCert: join(dir, 'client.crt'),
    clientKey: join(dir, 'client.key'),
    rotateServer: () => issue('server', 'server.ext'),
  };
}

/** The serial number of the certificate a TLS server presents now. */
export function presentedSerial(port: number, c: TestCerts): string {
  const out = execFileSync(
    'openssl',
    ['s_client', '-alpn', 'h2', '-connect', `127.0.0.1:${port}`, '-CAfile', c.ca, '-cert', c.clientCert, '-key', c.clientKey],
    { input: '', stdio: ['pipe', 'pipe', 'ignore'], timeout: 10_000 },
  ).toString();
  const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(out)?.[0] ?? '';
  return execFileSync('openssl', ['x509', '-noout', '-serial'], { input: pem }).toString().trim().replace('serial=', '');
}
