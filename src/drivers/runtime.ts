import type { Color, Config } from '../core/config'
import { UserError } from '../core/errors'
import { createComposeRuntime } from './compose'
import { expandEnv } from './config-file'
import { runningPid, startDetached, stopByPidFile } from './process'
import { createSystemdRuntime } from './systemd'

/** How backout starts, stops and inspects the blue and green targets, whatever runs them. */
export interface Runtime {
  readonly kind: Config['runtime']
  /** A short state for containers.json and the timeline, e.g. "running (pid 123)". */
  state(color: Color): Promise<{ running: boolean; detail: string }>
  start(color: Color): Promise<string>
  /** Stops gracefully within timeoutMs; returns how it ended. */
  stop(color: Color, timeoutMs: number): Promise<string>
  /** The images a target runs, each with the digest or image id that pins it exactly (container runtimes). */
  images?(color: Color): Promise<Array<{ service: string; image: string; pin: string }>>
}

/** The `process` runtime: targets are plain processes tracked by PID file. */
export function createProcessRuntime(config: Config, logDir: string): Runtime {
  const spec = (color: Color): NonNullable<Config['targets']['blue']['process']> => {
    const p = config.targets[color].process
    if (!p)
      throw new UserError(`targets.${color}.process is missing — the process runtime needs it`, 'bad_config')
    return p
  }
  return {
    kind: 'process',
    state(color) {
      const pid = runningPid(spec(color).pidFile)
      return Promise.resolve({
        running: pid !== undefined,
        detail: pid !== undefined ? `running (pid ${pid})` : 'stopped'
      })
    },
    // eslint-disable-next-line @typescript-eslint/require-await -- a refusal is a rejection, never a throw
    async start(color) {
      const p = spec(color)
      const running = runningPid(p.pidFile)
      if (running !== undefined) return `already running (pid ${running})`
      const pid = startDetached({
        command: p.command,
        cwd: p.cwd,
        env: expandServiceEnv(p.env, color),
        pidFile: p.pidFile,
        logFile: p.logFile ?? `${logDir}/${config.service}-${color}.log`
      })
      return `started (pid ${pid})`
    },
    async stop(color, timeoutMs) {
      const outcome = await stopByPidFile(spec(color).pidFile, timeoutMs)
      return outcome === 'killed' ? `did not stop in ${timeoutMs / 1000}s: killed` : outcome
    }
  }
}

/** targets.<color>.process.env with each ${VAR} taken from backout's environment (e.g. the `env` input). */
function expandServiceEnv(
  env: Record<string, string> | undefined,
  color: Color
): Record<string, string> | undefined {
  if (!env) return undefined
  return Object.fromEntries(
    Object.entries(env).map(([k, v]) => [
      k,
      expandEnv(v, `targets.${color}.process.env.${k}`, process.env, x => x)
    ])
  )
}

export function createRuntime(config: Config, logDir: string): Runtime {
  if (config.runtime === 'process') return createProcessRuntime(config, logDir)
  if (config.runtime === 'compose') return createComposeRuntime(config)
  if (config.runtime === 'systemd') return createSystemdRuntime(config)
  throw new UserError(
    `runtime "${String(config.runtime)}" is not supported by this version of backout — use runtime: process, compose or systemd`,
    'unsupported_runtime'
  )
}
