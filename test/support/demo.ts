// The e2e suites' sample service: an HTTP echo Service with two replicas that opt out of
// injection (the server side needs no sidecar), and a client pod that gets one.

export function echoService(namespace: string): object[] {
  return [
    {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'echo', namespace },
      spec: { selector: { app: 'echo' }, ports: [{ name: 'http', port: 80, targetPort: 8080 }] },
    },
    {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'echo', namespace },
      spec: {
        replicas: 2,
        selector: { matchLabels: { app: 'echo' } },
        template: {
          metadata: { labels: { app: 'echo', 'ballast.dev/inject': 'false' } },
          spec: {
            containers: [
              {
                name: 'echo',
                image: 'ballast-test/http-echo:dev',
                env: [{ name: 'PORT', value: '8080' }],
                readinessProbe: { httpGet: { path: '/', port: 8080 }, periodSeconds: 1 },
              },
            ],
          },
        },
      },
    },
  ];
}

export function clientPod(namespace: string): object {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'client', namespace },
    spec: { containers: [{ name: 'app', image: 'ballast-test/http-echo:dev', env: [{ name: 'PORT', value: '8080' }] }] },
  };
}
