/**
 * The standard gRPC health service (`grpc.health.v1.Health/Check`), as etcd serves it, so a
 * Kubernetes gRPC probe or grpc_health_probe can ask a member whether it serves: SERVING while
 * a leader is known and no alarm is raised, NOT_SERVING otherwise. The two messages have one
 * field each and are encoded by hand:
 * HealthCheckRequest { string service = 1 }, HealthCheckResponse { ServingStatus status = 1 }.
 */
import * as grpc from '@grpc/grpc-js';

const SERVING = 1;
const NOT_SERVING = 2;

function serviceOf(req: Buffer): string {
  // Field 1, wire type 2 (tag 0x0a), a length below 128 (service names are short).
  return req.length >= 2 && req[0] === 0x0a ? req.subarray(2, 2 + (req[1] ?? 0)).toString() : '';
}

export function registerHealth(server: Pick<grpc.Server, 'addService'>, serving: () => boolean): void {
  const identity = (b: Buffer) => b;
  server.addService(
    {
      Check: {
        path: '/grpc.health.v1.Health/Check',
        requestStream: false,
        responseStream: false,
        requestSerialize: identity,
        requestDeserialize: identity,
        responseSerialize: identity,
        responseDeserialize: identity,
      },
    },
    {
      Check: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
        const service = serviceOf(call.request);
        if (service !== '')
          return cb({
            code: grpc.status.NOT_FOUND,
            details: `unknown service "${service}": this member reports its health under the empty service name`,
          });
        cb(null, Buffer.from([0x08, serving() ? SERVING : NOT_SERVING]));
      },
    },
  );
}
