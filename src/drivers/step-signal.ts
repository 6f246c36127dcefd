import { AsyncLocalStorage } from 'node:async_hooks'

/**
 * The abort signal of the step running now, carried through its async work without passing it to every call:
 * the engine runs each step inside `runWithStepSignal`, and the drivers that start processes or wait
 * (exec, archive, sleep) stop when it aborts — so a step that passed its deadline leaves nothing running.
 */
const storage = new AsyncLocalStorage<AbortSignal>()

export function runWithStepSignal<T>(signal: AbortSignal, fn: () => T): T {
  return storage.run(signal, fn)
}

/** The running step's signal, if any. */
export function stepSignal(): AbortSignal | undefined {
  return storage.getStore()
}

/** `signal` combined with the running step's: aborted when either is. */
export function withStepSignal(signal?: AbortSignal): AbortSignal | undefined {
  const step = storage.getStore()
  if (!step || signal === step) return signal ?? step
  return signal ? AbortSignal.any([signal, step]) : step
}
