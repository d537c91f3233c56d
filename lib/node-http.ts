/**
 * node:http, loaded with require() instead of an ES module import. Importing node:http as an ES
 * module makes Node build its namespace, which reads every export, the lazy `WebSocket`,
 * `CloseEvent` and `MessageEvent` getters (Node 22+) included, and those load Node's bundled
 * undici (fetch, WebSocket, ~760 KB of source): 14 MiB of resident memory in a process that uses
 * none of it (a Node 24 process with only `import { createServer } from 'node:http'`: 59.5 MiB,
 * with this module 47.4; bench/sidecar-memory.ts). require() leaves the getters alone. Product
 * code imports node:http's values from here (eslint.config.js enforces it); types may still
 * come from 'node:http' with `import type`. Node's side: nodejs/node#59686 (the same namespace
 * read makes the ES import slower too); libraries that ES-import node:http (client-node) still pay.
 */
import type * as Http from 'node:http';
import { createRequire } from 'node:module';

const http = createRequire(import.meta.url)('node:http') as typeof Http;

export const { createServer, request, Agent, STATUS_CODES } = http;
