// grpc-go's interop client cases run by the conformance tests (sidecar-conformance, grpc-server-interop).

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
