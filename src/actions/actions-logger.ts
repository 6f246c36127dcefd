import * as core from '@actions/core'
import type { Logger } from '../core/logger'

/** The Logger on a runner: log groups, annotations, and secrets masked by the runner itself. */
export class ActionsLogger implements Logger {
  info(message: string): void {
    core.info(message)
  }
  warn(message: string): void {
    core.warning(message)
  }
  error(message: string): void {
    core.error(message)
  }
  debug(message: string): void {
    core.debug(message)
  }
  group<T>(name: string, fn: () => Promise<T>): Promise<T> {
    return core.group(name, fn)
  }
  mask(secret: string): void {
    core.setSecret(secret)
  }
}
