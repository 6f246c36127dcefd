import type { Logger } from '../core/logger'
import { maskSecrets } from '../core/logger'
import { sanitizeText } from '../core/sanitize'

/** The CLI's Logger: human lines on stderr (stdout stays for results and --json), groups indented. */
export class ConsoleLogger implements Logger {
  private depth = 0
  private readonly secrets: string[] = []
  constructor(
    private readonly out: NodeJS.WritableStream = process.stderr,
    private readonly verbose = false,
    /** Only warnings and errors: for output that tells its own story (the demo). */
    private readonly quiet = false
  ) {}
  private write(prefix: string, message: string): void {
    const indent = '  '.repeat(this.depth)
    const text = sanitizeText(maskSecrets(message, this.secrets))
    this.out.write(
      text
        .split('\n')
        .map(l => `${indent}${prefix}${l}`)
        .join('\n') + '\n'
    )
  }
  info(message: string): void {
    if (!this.quiet) this.write('', message)
  }
  warn(message: string): void {
    this.write('warning: ', message)
  }
  error(message: string): void {
    this.write('error: ', message)
  }
  debug(message: string): void {
    if (this.verbose) this.write('debug: ', message)
  }
  async group<T>(name: string, fn: () => Promise<T>): Promise<T> {
    if (!this.quiet) this.write('▸ ', name)
    this.depth++
    try {
      return await fn()
    } finally {
      this.depth--
    }
  }
  mask(secret: string): void {
    if (secret) this.secrets.push(secret)
  }
}
