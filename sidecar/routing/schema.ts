/**
 * The schema of an upstream's `httpRoutes` in the sidecar configuration: Gateway API HTTPRoute and
 * GRPCRoute rules as the operator sends them for the Service the upstream is (durations in
 * milliseconds, backends named by upstream). Written by hand in a file too; every problem is
 * reported by field path like the rest of the file.
 */
import { openapi } from '../../api/schema.ts';

const header = openapi.object(
  'A header to set or add.',
  {
    name: openapi.string('Header name.', { pattern: "^[A-Za-z0-9!#$%&'*+\\-.^_`|~]+$" }),
    value: openapi.string('Value.'),
  },
  { required: ['name', 'value'] },
);

const headerModifier = openapi.object('Header changes: set replaces, add appends, remove drops.', {
  set: openapi.array('Headers to set.', header, { default: [] }),
  add: openapi.array('Headers to append to.', header, { default: [] }),
  remove: openapi.array('Header names to drop.', openapi.string('a header name'), { default: [] }),
});

const pathModifier = openapi.object(
  'A path change.',
  {
    type: openapi.string('ReplaceFullPath or ReplacePrefixMatch (the matched PathPrefix).', {
      enum: ['ReplaceFullPath', 'ReplacePrefixMatch'],
    }),
    replaceFullPath: openapi.string('The new path.', { pattern: '^/' }),
    replacePrefixMatch: openapi.string('What replaces the matched prefix.', { pattern: '^/' }),
  },
  { required: ['type'] },
);

const filter = openapi.object(
  "A rule's or backend's filter.",
  {
    type: openapi.string('The filter.', { enum: ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestRedirect', 'URLRewrite'] }),
    requestHeaderModifier: headerModifier,
    responseHeaderModifier: headerModifier,
    requestRedirect: openapi.object('Answer with a redirect instead of forwarding.', {
      scheme: openapi.string('Scheme of the Location.', { enum: ['http', 'https'] }),
      hostname: openapi.string('Host of the Location.'),
      path: pathModifier,
      port: openapi.int('Port of the Location.', { minimum: 1, maximum: 65535 }),
      statusCode: openapi.int('301, 302 (default), 303, 307 or 308.', { minimum: 301, maximum: 308 }),
    }),
    urlRewrite: openapi.object('Change the request before it is forwarded.', {
      hostname: openapi.string('The Host (HTTP/1.1) or :authority (HTTP/2) sent.'),
      path: pathModifier,
    }),
  },
  { required: ['type'] },
);

const valueMatch = (what: string) =>
  openapi.object(
    `A ${what} match.`,
    {
      type: openapi.string('Exact or RegularExpression (the whole value).', { enum: ['Exact', 'RegularExpression'], default: 'Exact' }),
      name: openapi.string(`The ${what} name.`),
      value: openapi.string('The value.'),
    },
    { required: ['name', 'value'] },
  );

export const httpRoutesSchema = openapi.array(
  'Gateway API routes (HTTPRoute, GRPCRoute) attached to this Service: the rule a request matches picks filters and weighted backends (other upstreams). Empty: every request goes to this upstream.',
  openapi.object(
    'A route.',
    {
      name: openapi.string('<namespace>/<name> of the route.'),
      created: openapi.string("The route's creationTimestamp: the older route wins a tie.", { default: '' }),
      rules: openapi.array(
        'Its rules.',
        openapi.object('A rule.', {
          matches: openapi.array(
            'Any one of these matches (none: every request).',
            openapi.object('A match: every condition given must hold.', {
              path: openapi.object(
                'Path match.',
                {
                  type: openapi.string('Exact, PathPrefix (element by element) or RegularExpression.', {
                    enum: ['Exact', 'PathPrefix', 'RegularExpression'],
                    default: 'PathPrefix',
                  }),
                  value: openapi.string('The path.', { default: '/' }),
                },
                {},
              ),
              headers: openapi.array('Header matches (names case-insensitive).', valueMatch('header'), { default: [] }),
              queryParams: openapi.array('Query parameter matches.', valueMatch('query parameter'), { default: [] }),
              method: openapi.string('The method.', { pattern: '^[A-Z]+$' }),
            }),
            { default: [] },
          ),
          filters: openapi.array('Filters, in order.', filter, { default: [] }),
          backends: openapi.array(
            'Where matching requests go, by weight.',
            openapi.object(
              'A backend.',
              {
                upstream: openapi.string("The upstream's name ('' for a reference that did not resolve: its share is answered 500)."),
                weight: openapi.int('Relative weight (0: none).', { default: 1, minimum: 0, maximum: 1_000_000 }),
                filters: openapi.array("Filters for this backend's share.", filter, { default: [] }),
              },
              { required: ['upstream'] },
            ),
            { default: [] },
          ),
          timeouts: openapi.object('Gateway API timeouts (milliseconds; unset: the policy).', {
            requestMs: openapi.int('The whole request, retries included.', { minimum: 1 }),
            backendRequestMs: openapi.int('Each attempt.', { minimum: 1 }),
          }),
          retry: openapi.object('Gateway API retries (HTTPRouteRetry; unset: the policy).', {
            codes: openapi.array(
              'HTTP status codes retried (400–599), besides connection failures.',
              openapi.int('a status code', { minimum: 400, maximum: 599 }),
            ),
            attempts: openapi.int('Retries after the first attempt (0: none).', { minimum: 0, maximum: 9 }),
            backoffMs: openapi.int('At least this long between tries.', { minimum: 0 }),
          }),
        }),
        { default: [] },
      ),
    },
    { required: ['name'] },
  ),
  { default: [] },
);
