/**
 * A shared informer: list, then watch from the list's resourceVersion, keep a cache, relist
 * after 410 Gone (client-node's ListWatch does these), and restart with back-off after any other
 * error (which client-node leaves to its caller). Consumers get keys, not events: reconciles
 * read the cache (level-triggered), so a missed or merged event cannot mislead them.
 */
import { type KubeConfig, type KubernetesListObject, type KubernetesObject, ListWatch, Watch } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { Clock, TimerHandle } from '../clock.ts';
import { silentLogger } from '../log.ts';

export interface InformerOptions<T extends KubernetesObject> {
  kubeconfig: KubeConfig;
  /** The watch path, e.g. /api/v1/namespaces/default/configmaps or /apis/ballast.dev/v1alpha1/storeclusters. */
  path: string;
  list: () => Promise<KubernetesListObject<T>>;
  labelSelector?: string;
  fieldSelector?: string;
  clock: Clock;
  log?: Logger;
  /** First restart delay after an error; doubles to 30 s. */
  restartDelayMs?: number;
}

/** `namespace/name`, or `name` for cluster-scoped objects (client-go's key). */
export function keyOf(o: KubernetesObject): string {
  const ns = o.metadata?.namespace;
  return ns ? `${ns}/${o.metadata?.name ?? ''}` : (o.metadata?.name ?? '');
}

/**
 * A watch that asks for bookmarks: the apiserver then sends the current resourceVersion now and
 * then even when nothing of ours changed, so a watch restarted after a quiet hour resumes from a
 * recent version instead of failing with 410 Gone and relisting everything. (client-node's
 * ListWatch records bookmarks' versions but does not ask for them.)
 */
class BookmarkWatch extends Watch {
  override watch(
    path: string,
    queryParams: Record<string, string | number | boolean | undefined>,
    callback: (phase: string, apiObj: unknown, watchObj?: unknown) => void,
    done: (err: unknown) => void,
  ): Promise<AbortController> {
    return super.watch(path, { ...queryParams, allowWatchBookmarks: true }, callback, done);
  }
}

export class SharedInformer<T extends KubernetesObject> {
  readonly #options: InformerOptions<T>;
  readonly #log: Logger;
  #lw: ListWatch<T> | undefined;
  readonly #listeners: Array<(key: string) => void> = [];
  #restart: TimerHandle | undefined;
  #delay: number;
  #stopped = false;
  #synced = false;

  constructor(o: InformerOptions<T>) {
    this.#options = o;
    this.#log = o.log ?? silentLogger;
    this.#delay = o.restartDelayMs ?? 500;
  }

  /** Call `fn` with the key of every object added, changed or deleted (and all, on each relist). */
  onChange(fn: (key: string) => void): void {
    this.#listeners.push(fn);
  }

  get synced(): boolean {
    return this.#synced;
  }

  /** Start; resolves once the first list is in the cache. */
  async start(): Promise<void> {
    const lw = new ListWatch<T>(
      this.#options.path,
      new BookmarkWatch(this.#options.kubeconfig),
      this.#options.list,
      false,
      this.#options.labelSelector,
      this.#options.fieldSelector,
    );
    this.#lw = lw;
    const emit = (obj: T) => {
      // The cache keeps what the watch delivered; managedFields (server-side apply's record of
      // who owns each field) is most of an applied object and nothing a reconciler reads, so it
      // is dropped, as controller-runtime's TransformStripManagedFields does.
      if (obj.metadata?.managedFields) delete obj.metadata.managedFields;
      for (const fn of this.#listeners) fn(keyOf(obj));
    };
    lw.on('add', emit);
    lw.on('update', emit);
    lw.on('delete', emit);
    lw.on('connect', () => {
      this.#delay = this.#options.restartDelayMs ?? 500;
    });
    lw.on('error', (err) => {
      if (this.#stopped) return;
      this.#log.warn({ err, path: this.#options.path, retryMs: this.#delay }, 'watch failed; restarting');
      this.#restart?.cancel();
      this.#restart = this.#options.clock.setTimeout(() => {
        if (!this.#stopped) void lw.start().catch(() => undefined);
      }, this.#delay);
      this.#delay = Math.min(this.#delay * 2, 30_000);
    });
    await lw.start();
    this.#synced = true;
  }

  get(key: string): T | undefined {
    const [a, b] = key.split('/');
    return b === undefined ? this.#lw?.get(a ?? '') : this.#lw?.get(b, a);
  }

  list(): readonly T[] {
    return this.#lw?.list() ?? [];
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#restart?.cancel();
    await this.#lw?.stop();
  }
}
