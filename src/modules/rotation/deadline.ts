/** A rotator call that did not finish within the step deadline (KEYHOLD_ROTATION_STEP_TIMEOUT); its signal was aborted. */
export class DeadlineExceeded extends Error {
  constructor(what: string, ms: number) {
    super(`${what} did not finish within ${ms} ms (the source did not answer in time); the call was aborted`);
    this.name = 'DeadlineExceeded';
  }
}

/**
 * Runs one rotator call with a signal that aborts when `parent` does (the lease was lost) or after `ms`, and
 * settles by then whatever the call does: a rotator that ignores its signal is left behind rather than holding the
 * rotation, and the scheduler's pass, for ever. What the abandoned call settles with later goes to `late` (a
 * credential issued after all must be undone at the source); a late failure is dropped, never left unhandled.
 * @example
 * await withDeadline(60_000, leaseSignal, 'apply', (signal) => rotator.apply({ ...rc, signal }, value));
 */
export function withDeadline<T>(ms: number, parent: AbortSignal, what: string, call: (signal: AbortSignal) => Promise<T>, late?: (value: T) => void): Promise<T> {
  const controller = new AbortController();
  const stop = () => controller.abort(parent.reason);
  if (parent.aborted) stop();
  else parent.addEventListener('abort', stop, { once: true });
  const timer = setTimeout(() => controller.abort(new DeadlineExceeded(what, ms)), ms);
  // A watchdog, not work: like the lease heartbeat it keeps no process alive (a stopping one, a test's dead node).
  timer.unref();
  // Listening before the call does: on the deadline the wait ends with DeadlineExceeded whatever the call rejects with.
  const aborted = new Promise<never>((_resolve, reject) => {
    if (controller.signal.aborted) reject(controller.signal.reason);
    controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true });
  });
  aborted.catch(() => {});
  const running = Promise.resolve().then(() => call(controller.signal));
  running.then((value) => { if (controller.signal.aborted) late?.(value); }, () => {});
  return Promise.race([running, aborted]).finally(() => {
    clearTimeout(timer);
    parent.removeEventListener('abort', stop);
  });
}
