import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import type { Config } from '../core/config'
import { UserError, messageOf, reasonCodeFor } from '../core/errors'
import { formatHistoryLine, historyEntryFor } from '../core/history'
import type { Logger } from '../core/logger'
import { RUN_RECORD_SCHEMA, newRunId, type Level, type Operation, type RunRecord } from '../core/run-record'
import { sanitizeLine } from '../core/sanitize'
import { appendHistoryLine } from '../drivers/history-log'
import { acquireLock } from '../drivers/lock'
import { runSteps, type RunStepsOptions, type Step } from './run-steps'
import { notifyRollback } from './notify-rollback'

export interface OperationRequest {
  config: Config
  operation: Operation
  level?: Level
  reason: string
  dryRun: boolean
  log: Logger
  rtoSeconds: number
  confirm: RunStepsOptions['confirm']
  crashAfterStep?: number
  /** Builds the steps; may fill record.from / record.to as it learns them. */
  steps(record: RunRecord): Step[]
}

export interface OperationResult {
  record: RunRecord
  error?: unknown
}

/**
 * One operation on one service: takes the service lock (not for a dry run), runs the steps, and always
 * leaves a run record in state/runs/ and — for a rollback — one line in the history log.
 */
export async function runOperation(req: OperationRequest): Promise<OperationResult> {
  // --- security hold (backout emergency security; lifted only by `backout emergency release`) ---
  const hold = path.join(req.config.state.dir, 'security-hold')
  if (existsSync(hold))
    throw new UserError(
      `security hold: released only by \`backout emergency release --reason ...\` (${hold})`,
      'security_hold'
    )
  // --- end security hold ---
  const started = new Date()
  const record: RunRecord = {
    schema: RUN_RECORD_SCHEMA,
    id: newRunId(started),
    service: req.config.service,
    environment: req.config.environment,
    operation: req.operation,
    level: req.level,
    reason: sanitizeLine(req.reason),
    status: req.dryRun ? 'planned' : 'success',
    dryRun: req.dryRun,
    startedAt: started.toISOString(),
    rtoSeconds: req.rtoSeconds,
    steps: []
  }
  const lock = req.dryRun
    ? undefined
    : acquireLock(
        req.config.state.dir,
        req.config.service,
        `${req.operation}${req.level ? ` level ${req.level}` : ''}`,
        h =>
          req.log.warn(
            `took over a stale lock${h ? ` left by PID ${h.pid} on ${h.host} (${h.operation}, started ${h.startedAt})` : ''}`
          )
      )
  const notifier = notifyRollback(req.config, record, req.log)
  const startedMs = performance.now()
  let error: unknown
  try {
    if (lock) {
      const interrupted = takeOverInterrupted(req.config, record)
      if (interrupted)
        req.log.warn(
          `resuming run ${interrupted.id}, interrupted after: ${interrupted.steps.join(', ') || 'no step'}`
        )
      record.status = 'running'
      journal(req.config, record)
    }
    const steps = (): Promise<void> =>
      runSteps(record, req.steps(record), {
        dryRun: req.dryRun,
        log: req.log,
        rtoSeconds: req.rtoSeconds,
        confirm: req.confirm,
        crashAfterStep: req.crashAfterStep,
        onStep: () => lock && journal(req.config, record)
      })
    await (lock ? lock.run(steps) : steps())
    if (record.status === 'running') record.status = 'success'
  } catch (e) {
    error = e
    record.status = e instanceof UserError ? 'refused' : 'failed'
    record.error = messageOf(e)
    record.reasonCode = reasonCodeFor(e)
  } finally {
    record.endedAt = new Date().toISOString()
    record.durationMs = Math.round(performance.now() - startedMs)
    try {
      persist(req.config, record)
    } catch (e) {
      // The run is over (its outcome stands): a record that cannot be written (a full disk) is a warning.
      req.log.warn(
        `the run ${record.status === 'success' ? 'succeeded' : 'ended'}, but its record could not be written: ${messageOf(e)}`
      )
    } finally {
      lock?.release()
    }
  }
  await notifier.finish()
  return { record, error }
}

/** Writes the record as it stands (atomically): the journal a resumed run reads. */
function journal(config: Config, record: RunRecord): void {
  const runs = path.join(config.state.dir, 'runs')
  mkdirSync(runs, { recursive: true })
  const file = path.join(runs, `${record.id}.json`)
  writeFileSync(`${file}.tmp`, JSON.stringify(record, null, 2) + '\n')
  renameSync(`${file}.tmp`, file)
}

/**
 * A run of the same operation and level whose process died (its lock was stale) is marked interrupted,
 * and the new run carries what it knew — which versions it was moving between — so that it converges on
 * the same target instead of starting over from a half-changed state.
 */
function takeOverInterrupted(config: Config, record: RunRecord): RunRecord['resumedFrom'] {
  const previous = latestRunRecord(config, record.operation)
  if (!previous || previous.status !== 'running' || previous.level !== record.level) return undefined
  previous.status = 'failed'
  previous.error = 'interrupted: the process died before the run finished'
  previous.reasonCode = 'interrupted'
  journal(config, previous)
  record.resumedFrom = {
    id: previous.id,
    from: previous.from,
    to: previous.to,
    steps: previous.steps.filter(s => s.status === 'ok').map(s => s.name)
  }
  return record.resumedFrom
}

function persist(config: Config, record: RunRecord): void {
  if (record.dryRun) return
  const errors: string[] = []
  try {
    journal(config, record)
  } catch (e) {
    errors.push(`run record: ${messageOf(e)}`)
  }
  const entry = historyEntryFor(record)
  try {
    if (entry) appendHistoryLine(config.history.log, formatHistoryLine(entry))
  } catch (e) {
    errors.push(`history line in ${config.history.log}: ${messageOf(e)}`)
  }
  if (errors.length) throw new Error(errors.join('; '))
}

/** The newest run record in state/runs/, optionally of one operation. */
export function latestRunRecord(
  config: Config,
  operation?: RunRecord['operation'],
  exceptId?: string
): RunRecord | undefined {
  const runs = path.join(config.state.dir, 'runs')
  if (!existsSync(runs)) return undefined
  for (const file of readdirSync(runs)
    .filter(f => f.endsWith('.json'))
    .sort()
    .reverse()) {
    const record = JSON.parse(readFileSync(path.join(runs, file), 'utf8')) as RunRecord
    if (record.id === exceptId) continue
    if (!operation || record.operation === operation) return record
  }
  return undefined
}

/** One run record by id; a UserError listing the newest ones when there is no such run. */
export function readRunRecord(config: Config, id: string): RunRecord {
  const runs = path.join(config.state.dir, 'runs')
  const file = path.join(runs, `${id}.json`)
  if (!/^[0-9]{8}-[0-9]{6}-[a-z0-9]+$/.test(id) || !existsSync(file)) {
    const there = existsSync(runs)
      ? readdirSync(runs)
          .sort()
          .reverse()
          .slice(0, 5)
          .map(f => f.replace(/\.json$/, ''))
      : []
    throw new UserError(
      `no run ${id.slice(0, 60)} in ${runs}${there.length ? ` — the newest: ${there.join(', ')}` : ''}`,
      'no_record'
    )
  }
  return JSON.parse(readFileSync(file, 'utf8')) as RunRecord
}
