/** etcd's v3 API definitions, loaded once for the store's server and for its clients (the operator). */
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';

// `make build` copies the .proto files next to the compiled code, so this works from dist/ too.
const protoDir = fileURLToPath(new URL('./proto/', import.meta.url));

export function loadProtos(): grpc.GrpcObject {
  const def = protoLoader.loadSync(['rpc.proto', 'v3lock.proto', 'v3election.proto'], {
    includeDirs: [protoDir],
    keepCase: true,
    longs: String,
    enums: Number,
    defaults: true,
    oneofs: true,
    bytes: Buffer,
  });
  return grpc.loadPackageDefinition(def);
}
