import { reasonCodeFor } from '../core/errors'
import type { Level } from '../core/run-record'
import { shouldEscalate } from '../engine/escalate'
import { rollback } from '../engine/rollback'
import type { ActionContext, ActionOutcome } from './action-runner'

type LevelAction = 'backout' | 'rollback-level-1' | 'rollback-level-2' | 'rollback-level-3'

/**
 * rollback-level-N. On GitHub the confirmation is the environment approval that gated this job, so the
 * engine runs without asking again. `escalatable` is true only when the level failed for a reason the next
 * level can help with (engine/escalate.ts): never for a held lock, a bad config or target, or a refusal.
 */
export async function runRollbackLevel(
  level: Level,
  ctx: ActionContext<LevelAction>
): Promise<ActionOutcome<LevelAction>> {
  const service = ctx.service()
  const target = level === 1 ? undefined : ctx.input('target') || undefined
  const dryRun = ctx.boolean('dry-run')
  const { record, error } = await rollback(service, {
    level,
    target,
    toTime: level === 3 ? ctx.input('to-time') || undefined : undefined,
    reason: ctx.input('reason') || 'rollback from GitHub Actions',
    dryRun,
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
      safety_backup_id: record.safetyBackupId ?? '',
      escalatable: error !== undefined && shouldEscalate(error)
    },
    record,
    failure: error
  }
}
