import { setTimeout as delay } from 'node:timers/promises'
import { withStepSignal } from './step-signal'

/**
 * Waits ms milliseconds; an abort — of `signal` or of the running step's — ends the wait early (it resolves, the
 * caller checks signal.aborted).
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return delay(ms, undefined, { signal: withStepSignal(signal) }).catch(() => undefined)
}
