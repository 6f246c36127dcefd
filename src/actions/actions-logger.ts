import * as core from '@actions/core'
import type { Logger } from '../core/logger'
import { sanitizeText as clean } from '../core/sanitize'

/** The Logger on a runner: log groups, annotations, and secrets masked by the runner itself. */
export class ActionsLogger implements Logger {
  readonly #masked = new Set<string>()
  /** Every value this process asked the runner to mask. */
  masked(): string[] {
    return [...this.#masked]
  }
  info(message: string): void {
    core.info(clean(message))
  }
  warn(message: string): void {
    core.warning(clean(message))
  }
  error(message: string): void {
    core.error(clean(message))
  }
  debug(message: string): void {
    core.debug(clean(message))
  }
  group<T>(name: string, fn: () => Promise<T>): Promise<T> {
    return core.group(clean(name), fn)
  }
  mask(secret: string): void {
    if (!secret) return
    this.#masked.add(secret)
    core.setSecret(secret)
  }
}
