import { type Command, InvalidArgumentError } from 'commander'
import { EXIT } from '../../core/errors'
import type { Logger } from '../../core/logger'
import type { RunRecord } from '../../core/run-record'
import { MONITOR_SECONDS, monitorWindow, type MonitorResult } from '../../engine/monitor'
import type { Service } from '../../engine/service'

/**
 * `backout monitor` and the follow-through after a rollback: the runbook's monitoring window with a live line of
 * error rate and p95, then the pointer to `backout incident`.
 */

export interface MonitorDeps {
  service(): Service
  log: Logger
  print(human: string, data: unknown): void
  setExit(code: number): void
}

export function parseSeconds(value: string): number {
  const n = Number(value)
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('expected a number of seconds ≥ 0')
  return n
}

/** The window the runbook asks for after this run: Level 1 → 2 min, any other rollback → 15 min. */
export function monitorSecondsFor(record: RunRecord): number {
  return record.level === 1 ? MONITOR_SECONDS.level1 : MONITOR_SECONDS.postRollback
}

/**
 * After a rollback that succeeded: monitor for `seconds` (default: the runbook's window for its level) unless
 * `monitor` is false, then point at the incident. Returns the monitoring result, if it ran.
 */
export async function followThrough(
  service: Service,
  record: RunRecord,
  options: { monitor: boolean; seconds?: number; intervalSeconds?: number },
  log: Logger
): Promise<MonitorResult | undefined> {
  if (record.status !== 'success' || record.dryRun) return undefined
  let result: MonitorResult | undefined
  if (options.monitor) {
    const seconds = options.seconds ?? monitorSecondsFor(record)
    log.info(`post-rollback monitoring for ${seconds} s (--no-monitor skips it):`)
    result = await monitorWindow(service, {
      seconds,
      intervalSeconds: options.intervalSeconds ?? Math.min(10, Math.max(1, seconds / 12)),
      onLine: line => log.info(`  ${line}`)
    })
    log.info(result.summary)
  }
  log.info(
    `next: backout incident --run ${record.id}   # the incident report, post-mortem and stakeholder notification`
  )
  return result
}

/**
 * Whether and how long to monitor after a rollback: --no-monitor skips; --monitor-seconds N (or
 * BACKOUT_MONITOR_SECONDS) sets the window; otherwise the runbook's window on a terminal. Without a terminal and
 * without a window given (scripts, CI: their pipeline validates on its own) it is skipped, and says so.
 */
export function monitorChoice(
  monitor: boolean,
  seconds: number | undefined,
  log: Logger,
  env: NodeJS.ProcessEnv = process.env,
  interactive = Boolean(process.stdin.isTTY)
): { monitor: boolean; seconds?: number } {
  if (!monitor) return { monitor: false }
  const fromEnv = env.BACKOUT_MONITOR_SECONDS
  const configured = seconds ?? (fromEnv !== undefined && fromEnv !== '' ? parseSeconds(fromEnv) : undefined)
  if (configured !== undefined) return { monitor: configured > 0, seconds: configured }
  if (interactive) return { monitor: true }
  log.info(
    'post-rollback monitoring skipped: no terminal — pass --monitor-seconds N (or set BACKOUT_MONITOR_SECONDS) to watch error rate and p95 after the rollback'
  )
  return { monitor: false }
}

export function register(program: Command, deps: MonitorDeps): void {
  program
    .command('monitor')
    .description(
      "watch error rate and p95 for a while, one line per reading (the runbook's post-rollback monitoring)"
    )
    .option('--seconds <n>', `how long (default ${MONITOR_SECONDS.postRollback})`, parseSeconds)
    .option('--interval <n>', 'seconds between readings (default 10)', parseSeconds)
    .action(async (o: { seconds?: number; interval?: number }) => {
      const result = await monitorWindow(deps.service(), {
        seconds: o.seconds ?? MONITOR_SECONDS.postRollback,
        intervalSeconds: o.interval,
        onLine: line => deps.log.info(line)
      })
      deps.print(result.summary, result)
      if (!result.passed) deps.setExit(EXIT.failed)
    })
}
