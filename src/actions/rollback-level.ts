import * as core from '@actions/core'
import { reasonCodeFor } from '../core/errors'
import type { Level } from '../core/run-record'
import { rollback } from '../engine/rollback'
import { booleanInput, type ActionContext, type ActionOutcome } from './action-runner'

/**
 * rollback-level-N. On GitHub the confirmation is the environment approval that gated this job, so the
 * engine runs without asking again.
 */
export async function runRollbackLevel(level: Level, ctx: ActionContext): Promise<ActionOutcome> {
  const service = ctx.service()
  const target = level === 1 ? undefined : core.getInput('target') || undefined
  const { record, error } = await rollback(service, {
    level,
    target,
    toTime: level === 3 ? core.getInput('to-time') || undefined : undefined,
    reason: core.getInput('reason') || 'rollback from GitHub Actions',
    dryRun: booleanInput('dry-run'),
    confirm: () => Promise.resolve(true)
  })
  const decision = record.status === 'success' ? 'rolled_back' : record.status
  return {
    decision,
    reasonCode: error === undefined ? (record.dryRun ? 'dry_run' : 'ok') : reasonCodeFor(error),
    outputs: {
      from: record.from ?? '',
      to: record.to ?? '',
      duration_seconds: ((record.durationMs ?? 0) / 1000).toFixed(1),
      safety_backup_id: record.safetyBackupId ?? ''
    },
    record,
    failure: error
  }
}
