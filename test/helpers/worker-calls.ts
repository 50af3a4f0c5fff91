import { parentPort, Worker } from 'node:worker_threads';

/**
 * Another server "node" in a worker thread, as a second process would run: tests whose nodes share a
 * SQLite file need it, since node:sqlite is synchronous and a node waiting in SQLite's busy handler
 * blocks its whole thread (in one thread, the node holding the lock could then never finish).
 */
export interface WorkerNode {
  /** Runs `op` in the worker with `args` (structured-cloned), concurrently with any other call. */
  call<T>(op: string, ...args: unknown[]): Promise<T>;
  /** Runs the worker's close, then waits for the thread to end. */
  close(): Promise<void>;
}

type Request = { id: number; op: string; args: unknown[] } | { close: true };
type Reply = 'ready' | { id: number; value?: unknown; error?: { message: string; code?: string } };

/** Starts `url` (a module that calls serveCalls) and resolves once it is ready, or rejects with why it did not start. */
export async function startWorkerNode(url: URL, workerData: unknown): Promise<WorkerNode> {
  const worker = new Worker(url, { workerData });
  const waiting = new Map<number, { resolve: (value: unknown) => void; reject: (err: Error) => void }>();
  let nextId = 1;
  let stopped: Error | null = null;
  const failAll = (err: Error) => {
    stopped ??= err;
    for (const w of waiting.values()) w.reject(err);
    waiting.clear();
  };
  worker.on('error', failAll);
  const exited = new Promise<void>((resolve) => worker.once('exit', (code) => {
    failAll(new Error(`the worker node exited (code ${code})`));
    resolve();
  }));
  await new Promise<void>((resolve, reject) => {
    worker.on('message', (m: Reply) => {
      if (m === 'ready') return resolve();
      const w = waiting.get(m.id);
      waiting.delete(m.id);
      if (m.error) w?.reject(Object.assign(new Error(`worker node: ${m.error.message}`), { code: m.error.code }));
      else w?.resolve(m.value);
    });
    void exited.then(() => reject(stopped));
  });
  return {
    call: <T>(op: string, ...args: unknown[]) => new Promise<T>((resolve, reject) => {
      if (stopped) return reject(stopped);
      const id = nextId++;
      waiting.set(id, { resolve: resolve as (value: unknown) => void, reject });
      worker.postMessage({ id, op, args } satisfies Request);
    }),
    async close() {
      if (!stopped) worker.postMessage({ close: true } satisfies Request);
      await exited;
    },
  };
}

/** In the worker: answers each call with `ops[op](...args)`, as calls arrive; on close runs `close` and lets the thread end. */
export function serveCalls(ops: Record<string, (...args: never[]) => Promise<unknown>>, close: () => Promise<void>): void {
  const port = parentPort!;
  port.on('message', async (req: Request) => {
    if ('close' in req) {
      await close();
      port.close();
      return;
    }
    try {
      port.postMessage({ id: req.id, value: await (ops[req.op] as (...args: unknown[]) => Promise<unknown>)(...req.args) } satisfies Reply);
    } catch (err) {
      const e = err as { message?: unknown; code?: unknown };
      port.postMessage({ id: req.id, error: { message: String(e?.message ?? err), ...(typeof e?.code === 'string' ? { code: e.code } : {}) } } satisfies Reply);
    }
  });
  port.postMessage('ready' satisfies Reply);
}
