// grpc-go's interop client and the cases the conformance tests run with it (sidecar-conformance,
// grpc-server-interop).
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { cacheDir } from '../../cluster/toolchain.ts';

/** grpc-go's interop client and server (v1.85.0), built by `make conformance`. */
export const interopDir = join(cacheDir(), 'grpc-interop-v1.85.0');
const run = promisify(execFile);

/**
 * Every test case the interop client offers that needs neither TLS nor Google credentials.
 * Three more are offered and left out because they fail against grpc-go's own server as started
 * here, with no proxy: pick_first_unary (the server must report an ID, which the interop server
 * does only as part of xDS setups), orca_per_rpc and orca_oob (the server must be started with
 * ORCA metrics, which its flags do not offer).
 */
export const interopCases = [
  'empty_unary',
  'large_unary',
  'client_streaming',
  'server_streaming',
  'ping_pong',
  'empty_stream',
  'timeout_on_sleeping_server',
  'cancel_after_begin',
  'cancel_after_first_response',
  'status_code_and_message',
  'special_status_message',
  'custom_metadata',
  'unimplemented_method',
  'unimplemented_service',
];

/** One interop case against a server on 127.0.0.1:port: 'pass', or 'FAIL: ' and the client's last line. */
export async function interopCase(port: number, test: string): Promise<string> {
  try {
    await run(join(interopDir, 'client'), [`-server_port=${port}`, `-test_case=${test}`], { timeout: 60_000 });
    return 'pass';
  } catch (e) {
    const out = `${(e as { stderr?: string }).stderr ?? ''}${(e as Error).message}`;
    return `FAIL: ${out.trim().split('\n').pop()?.slice(0, 300)}`;
  }
}
