/**
 * Container lifecycle hooks (preStop; postStart has the same shape): exec inside the
 * container's network and mount namespaces, HTTP GET to the pod, or sleep; bounded by a budget
 * (what is left of the grace period). Resolves true when the hook succeeded in time.
 */
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import type { V1Container, V1LifecycleHandler } from '@kubernetes/client-node';
import { argvOf, inSandbox } from './network.ts';
import type { PodRuntime } from './runtime.ts';
import { mountsFor, withMounts } from './volumes.ts';

export function runHook(rt: PodRuntime, c: V1Container, hook: V1LifecycleHandler, budgetMs: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), budgetMs);
    const done = (v: boolean) => {
      clearTimeout(timer);
      resolve(v);
    };
    if (hook.exec?.command?.length) {
      const p = spawn(...argvOf(inSandbox(rt.sandbox, withMounts(hook.exec.command, mountsFor(c, rt.volumes)))), { stdio: 'ignore', timeout: budgetMs });
      p.on('exit', (code) => done(code === 0));
      p.on('error', () => done(false));
    } else if (hook.httpGet) {
      const g = hook.httpGet;
      const port = typeof g.port === 'number' ? g.port : Number(/^\d+$/.test(g.port) ? g.port : (c.ports ?? []).find((p) => p.name === g.port)?.containerPort ?? 0);
      const req = request({ host: g.host ?? rt.sandbox.ip, port, path: g.path ?? '/', timeout: budgetMs }, (res) => {
        res.resume();
        done((res.statusCode ?? 0) < 400);
      });
      req.on('error', () => done(false));
      req.end();
    } else if (hook.sleep) {
      setTimeout(() => done(true), Math.min(budgetMs, hook.sleep.seconds * 1000));
    } else {
      done(true);
    }
  });
}
