import { setTimeout as delay } from 'node:timers/promises'

/** Waits ms milliseconds; an abort ends the wait early (it resolves, the caller checks signal.aborted). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return delay(ms, undefined, { signal }).catch(() => undefined)
}
