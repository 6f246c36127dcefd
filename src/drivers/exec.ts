import { spawn } from 'node:child_process'
import { withStepSignal } from './step-signal'

/** The result of a finished command, whatever its exit code. */
export interface CommandResult {
  code: number
  stdout: string
  stderr: string
}

export interface RunOptions {
  cwd?: string
  env?: NodeJS.ProcessEnv
  /** Written to the command's standard input, then closed. */
  input?: string | Buffer
  signal?: AbortSignal
  /** Kill the command after this many milliseconds. */
  timeoutMs?: number
}

/** How long a command gets between SIGTERM and SIGKILL once its signal aborted. */
const KILL_GRACE_MS = 2000

/**
 * Runs a command from an argument array — never through a shell — and returns its exit code and output.
 * A command that cannot be started (not installed) rejects with a message naming it.
 *
 * Aborting `signal`, or the running step's signal (see step-signal.ts), ends the command: it runs in its own
 * process group, which gets SIGTERM and, 2 s later, SIGKILL; the promise rejects once the command has exited, so
 * a caller that awaits it knows nothing it started is left running.
 */
export function runCommand(argv: readonly string[], options: RunOptions = {}): Promise<CommandResult> {
  const [file, ...args] = argv
  if (!file) return Promise.reject(new Error('runCommand: empty argument list'))
  const signal = withStepSignal(options.signal)
  if (signal?.aborted) return Promise.reject(abortError(file, signal))
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      timeout: options.timeoutMs,
      stdio: ['pipe', 'pipe', 'pipe'],
      // Its own process group, so that an abort reaches what the command started too.
      detached: signal !== undefined
    })
    const killGroup = (sig: NodeJS.Signals): void => {
      if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return
      try {
        process.kill(-child.pid, sig)
      } catch {
        child.kill(sig)
      }
    }
    let killer: NodeJS.Timeout | undefined
    const onAbort = (): void => {
      killGroup('SIGTERM')
      killer = setTimeout(() => killGroup('SIGKILL'), KILL_GRACE_MS)
    }
    signal?.addEventListener('abort', onAbort, { once: true })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (b: Buffer) => out.push(b))
    child.stderr.on('data', (b: Buffer) => err.push(b))
    child.on('error', (e: NodeJS.ErrnoException) => {
      signal?.removeEventListener('abort', onAbort)
      if (e.code === 'ENOENT')
        reject(new Error(`required tool not found: ${file} — install it or put it on PATH`))
      else reject(e)
    })
    child.on('close', (code, sig) => {
      signal?.removeEventListener('abort', onAbort)
      clearTimeout(killer)
      if (signal?.aborted) return reject(abortError(file, signal))
      resolve({
        code: code ?? (sig ? 128 : 1),
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8')
      })
    })
    child.stdin.on('error', () => undefined)
    if (options.input !== undefined) child.stdin.end(options.input)
    else child.stdin.end()
  })
}

function abortError(file: string, signal: AbortSignal): Error {
  const why = signal.reason instanceof Error ? `: ${signal.reason.message}` : ''
  const e = new Error(`${file} was stopped: its operation was aborted${why}`)
  e.name = 'AbortError'
  return e
}

/** Runs a command and throws, with its stderr, when it exits non-zero. */
export async function runChecked(argv: readonly string[], options: RunOptions = {}): Promise<CommandResult> {
  const result = await runCommand(argv, options)
  if (result.code !== 0) {
    const tail = (result.stderr || result.stdout).trim().split('\n').slice(-5).join('\n')
    throw new Error(`${argv.join(' ')} exited ${result.code}: ${tail}`)
  }
  return result
}
