import { spawn } from 'node:child_process'

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

/**
 * Runs a command from an argument array — never through a shell — and returns its exit code and output.
 * A command that cannot be started (not installed) rejects with a message naming it.
 */
export function runCommand(argv: readonly string[], options: RunOptions = {}): Promise<CommandResult> {
  const [file, ...args] = argv
  if (!file) return Promise.reject(new Error('runCommand: empty argument list'))
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      signal: options.signal,
      timeout: options.timeoutMs,
      stdio: ['pipe', 'pipe', 'pipe']
    })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (b: Buffer) => out.push(b))
    child.stderr.on('data', (b: Buffer) => err.push(b))
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT')
        reject(new Error(`required tool not found: ${file} — install it or put it on PATH`))
      else reject(e)
    })
    child.on('close', (code, signal) => {
      resolve({
        code: code ?? (signal ? 128 : 1),
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8')
      })
    })
    child.stdin.on('error', () => undefined)
    if (options.input !== undefined) child.stdin.end(options.input)
    else child.stdin.end()
  })
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
