/**
 * Runs `process.nextTick` hot before the server's start-up work does.
 *
 * Why: Node's HTTP and stream internals call process.nextTick several times per request, and V8
 * optimizes it from the type feedback gathered until then. After Keyhold's start-up (migrations,
 * module wiring, the audit worker) that feedback is often polluted, and the optimized nextTick
 * then builds its tick object through a slow runtime call (Runtime_DefineKeyedOwnPropertyInLiteral).
 * Profiled under the bench's read load: nextTick took 6.8-7.3% of the event loop's time in
 * servers started without this, 0.5-1.0% with it (five alternating starts each; see
 * docs/benchmarks.md). It changes no behaviour, only which machine code V8 settles on first.
 */
export async function warmUpNextTick(rounds = 50, perRound = 1_000): Promise<void> {
  const noop = () => {};
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < perRound; i++) process.nextTick(noop);
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}
