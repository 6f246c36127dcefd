import { spawn } from 'node:child_process'
import { existsSync, openSync, closeSync, readFileSync, writeFileSync, rmSync, mkdirSync } from 'node:fs'
import path from 'node:path'
import { sleep } from './sleep'

/** Processes backout starts and stops itself, tracked by PID file (there is no systemd as PID 1 here). */

/** Whether the process runs. A zombie (exited, not yet reaped by its parent or PID 1) does not. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return true // no /proc (not Linux): kill(0) is all there is
  }
}

export function readPid(pidFile: string): number | undefined {
  if (!existsSync(pidFile)) return undefined
  const pid = Number(readFileSync(pidFile, 'utf8').trim())
  return Number.isInteger(pid) && pid > 0 ? pid : undefined
}

/** The PID in the file, when that process is alive. */
export function runningPid(pidFile: string): number | undefined {
  const pid = readPid(pidFile)
  return pid !== undefined && isAlive(pid) ? pid : undefined
}

export interface StartSpec {
  command: readonly string[]
  cwd?: string
  /** The service's own variables (targets.*.process.env, ${VAR}s already expanded), over the base. */
  env?: Record<string, string>
  pidFile: string
  logFile: string
}

/**
 * The only variables a started service takes from backout's own environment. Never the rest: on a runner
 * that holds every secret of the `env` input (INPUT_ENV), the job token (INPUT_TOKEN, ACTIONS_RUNTIME_TOKEN)
 * and RUNNER_TRACKING_ID — the marker the runner uses to kill a job's leftover processes when the job ends,
 * which would kill a service a rollback just restored.
 */
export const SERVICE_BASE_ENV = [
  'PATH',
  'HOME',
  'USER',
  'LOGNAME',
  'SHELL',
  'LANG',
  'LC_ALL',
  'TZ',
  'TMPDIR'
] as const

/** A service's environment: the minimal base from `from`, then its own variables. */
export function serviceEnvironment(
  own: Record<string, string> | undefined,
  from: NodeJS.ProcessEnv = process.env
): Record<string, string> {
  const env: Record<string, string> = {}
  for (const name of SERVICE_BASE_ENV) {
    const value = from[name]
    if (value !== undefined) env[name] = value
  }
  return { ...env, ...own }
}

/** Starts a detached process with its output in logFile and its PID in pidFile, in its own environment. */
export function startDetached(spec: StartSpec): number {
  const [file, ...args] = spec.command
  if (!file) throw new Error('startDetached: empty command')
  mkdirSync(path.dirname(spec.logFile), { recursive: true })
  mkdirSync(path.dirname(spec.pidFile), { recursive: true })
  const fd = openSync(spec.logFile, 'a')
  try {
    const child = spawn(file, args, {
      cwd: spec.cwd,
      env: serviceEnvironment(spec.env),
      detached: true,
      stdio: ['ignore', fd, fd]
    })
    if (child.pid === undefined) throw new Error(`could not start ${file}`)
    child.unref()
    writeFileSync(spec.pidFile, `${child.pid}\n`)
    return child.pid
  } finally {
    closeSync(fd)
  }
}

/**
 * Stops a process gracefully: SIGTERM, then up to timeoutMs for it to exit, then SIGKILL.
 * Returns how it ended. A process that is not running is already stopped.
 */
export async function stopPid(
  pid: number,
  timeoutMs: number
): Promise<'not-running' | 'terminated' | 'killed'> {
  if (!isAlive(pid)) return 'not-running'
  process.kill(pid, 'SIGTERM')
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return 'terminated'
    await sleep(25)
  }
  try {
    process.kill(pid, 'SIGKILL')
  } catch {
    return 'terminated'
  }
  while (isAlive(pid)) await sleep(10)
  return 'killed'
}

export async function stopByPidFile(
  pidFile: string,
  timeoutMs: number
): Promise<'not-running' | 'terminated' | 'killed'> {
  const pid = readPid(pidFile)
  const outcome = pid === undefined ? 'not-running' : await stopPid(pid, timeoutMs)
  rmSync(pidFile, { force: true })
  return outcome
}
