import { sanitizeText } from './sanitize'

/**
 * The one logging surface. Entry points implement it (console for the CLI, @actions/core for actions);
 * core decisions never log, and drivers and the engine receive a Logger as an argument.
 */
export interface Logger {
  info(message: string): void
  warn(message: string): void
  error(message: string): void
  debug(message: string): void
  /** Runs fn inside a collapsible group (a log group on GitHub, an indented block in a terminal). */
  group<T>(name: string, fn: () => Promise<T>): Promise<T>
  /** Registers a secret: it is replaced by *** in everything this logger prints from now on. */
  mask(secret: string): void
}

/** A Logger that keeps lines in memory: for tests and for capturing a step's output. */
export class MemoryLogger implements Logger {
  readonly lines: string[] = []
  private readonly secrets: string[] = []
  private push(level: string, message: string): void {
    this.lines.push(`${level}: ${sanitizeText(maskSecrets(message, this.secrets))}`)
  }
  info(message: string): void {
    this.push('info', message)
  }
  warn(message: string): void {
    this.push('warn', message)
  }
  error(message: string): void {
    this.push('error', message)
  }
  debug(message: string): void {
    this.push('debug', message)
  }
  async group<T>(name: string, fn: () => Promise<T>): Promise<T> {
    this.push('group', name)
    return fn()
  }
  mask(secret: string): void {
    if (secret) this.secrets.push(secret)
  }
}

export function maskSecrets(text: string, secrets: readonly string[]): string {
  let out = text
  for (const s of secrets) if (s.length > 0) out = out.split(s).join('***')
  return out
}
