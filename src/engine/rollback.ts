import { UserError } from '../core/errors'
import type { Level } from '../core/run-record'
import { level1Steps } from './level1'
import { level2Steps } from './level2'
import { discardPreparedBase, discardPreparedDump } from './database-backup'
import { discardPreparedData, level3Steps } from './level3'
import { runOperation, type OperationResult } from './operation'
import type { LevelSteps, RollbackRequest } from './rollback-request'
import type { Service } from './service'

const LEVELS: Record<Level, LevelSteps> = { 1: level1Steps, 2: level2Steps, 3: level3Steps }

export type { RollbackRequest } from './rollback-request'

/** Runs one rollback level against a service: the one engine behind the CLI and the actions. */
export async function rollback(service: Service, req: RollbackRequest): Promise<OperationResult> {
  const result = await runLevel(service, req)
  // What the pre-flight unpacked beside the data (data archives, base backup, dump) serves the restore of this run
  // only: once the run returns — restored, planned, refused, failed, or done without it (Level 2's Method 1, whose
  // fallback was checked) — none of it is left behind. A killed run keeps it for its resumption, which re-checks it
  // against the backup's checksums before using it.
  const { backupId } = result.record
  if (backupId) {
    discardPreparedData(service, backupId)
    discardPreparedBase(service, backupId)
    discardPreparedDump(service, backupId)
  }
  return result
}

function runLevel(service: Service, req: RollbackRequest): Promise<OperationResult> {
  const { config } = service
  if (req.target !== undefined) service.store.pathOf(req.target) // refuses a malformed id before anything
  if (req.toTime !== undefined && (req.level !== 3 || Number.isNaN(Date.parse(req.toTime))))
    throw new UserError(
      req.level !== 3
        ? '--to-time is for Level 3 (point-in-time recovery) only'
        : `--to-time: "${req.toTime.slice(0, 40)}" is not a time — use ISO-8601, e.g. 2026-11-23T12:00:00Z`,
      'bad_argument'
    )
  const rto = config.thresholds.rtoMinutes
  return runOperation({
    config,
    operation: 'rollback',
    level: req.level,
    reason: req.allowUncapturedDatabase
      ? `${req.reason} [override: --allow-uncaptured-database]`
      : req.reason,
    dryRun: req.dryRun,
    log: service.log,
    rtoSeconds: (req.level === 1 ? rto.level1 : req.level === 2 ? rto.level2 : rto.level3) * 60,
    confirm: req.confirm,
    crashAfterStep: req.crashAfterStep,
    steps: record => LEVELS[req.level](service, record, req)
  })
}
