import * as core from '@actions/core'
import type { Logger } from '../core/logger'
import { sanitizeText as clean } from '../core/sanitize'

/** The Logger on a runner: log groups, annotations, and secrets masked by the runner itself. */
export class ActionsLogger implements Logger {
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
    core.setSecret(secret)
  }
}
