/** gRPC methods that carry bytes as they are (no protobuf): for testing a transport alone. */
import type * as grpc from '@grpc/grpc-js';

export const identity = (b: Buffer): Buffer => b;

/** The method `/test.Echo/<name>` of the given streaming shape, with identity (de)serializers. */
export function bytesMethod(name: string, requestStream: boolean, responseStream: boolean): grpc.MethodDefinition<Buffer, Buffer> {
  return {
    path: `/test.Echo/${name}`,
    requestStream,
    responseStream,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
  };
}
