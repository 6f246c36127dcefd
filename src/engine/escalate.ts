import { LockHeldError, reasonCodeFor } from '../core/errors'
import type { Level } from '../core/run-record'
import type { OperationResult } from './operation'
import { rollback } from './rollback'
import type { RollbackRequest } from './rollback-request'
import type { Service } from './service'

/**
 * Failures that the next level cannot help with: the operator said no, someone else holds the lock (backout's or a
 * running migration's), bad input or configuration, a security hold.
 */
const DO_NOT_ESCALATE = new Set([
  'not_confirmed',
  'lock_held',
  'migration_running',
  'bad_argument',
  'bad_config',
  'bad_target',
  'security_hold'
])

/**
 * Whether a level that ended with this reason code should go on to the next level (the runbook's "When Level N
 * fails"): the one rule for the CLI's --escalate and the workflows (the rollback actions output it).
 */
export function isEscalatable(reasonCode: string | undefined): boolean {
  return reasonCode !== undefined && !DO_NOT_ESCALATE.has(reasonCode)
}

export interface EscalationResult {
  /** One result per level that ran, in order; the last one is the outcome. */
  results: OperationResult[]
  /** The level that succeeded, if one did. */
  succeeded?: Level
}

/** Whether a level's failure or refusal should go on to the next level (the runbook's "When Level N fails"). */
export function shouldEscalate(error: unknown): boolean {
  if (error instanceof LockHeldError) return false
  return isEscalatable(reasonCodeFor(error))
}

/**
 * `rollback --escalate`: runs req.level, and when it fails or refuses, the next level — up to Level 3 — as
 * the runbook's "When Level 1 fails" and "When Level 2 fails" say. Each level is its own operation: it takes
 * the lock, asks for confirmation again before it changes anything (`confirmFor(level)`, default
 * req.confirm), and leaves its own run record and history line. Stops at the first success.
 */
export async function rollbackWithEscalation(
  service: Service,
  req: RollbackRequest,
  confirmFor: (level: Level) => RollbackRequest['confirm'] = () => req.confirm
): Promise<EscalationResult> {
  const results: OperationResult[] = []
  let level: Level = req.level
  for (;;) {
    const previous = results[results.length - 1]
    const reason = previous
      ? `${req.reason} (escalated from Level ${level - 1}: ${reasonCodeFor(previous.error)})`
      : req.reason
    if (previous)
      service.log.warn(
        `Level ${level - 1} did not succeed (${previous.record.status}); escalating to Level ${level}`
      )
    const result = await rollback(service, {
      ...req,
      level,
      reason,
      // A point in time is Level 3's alone; the earlier levels run without it.
      toTime: level === 3 ? req.toTime : undefined,
      confirm: confirmFor(level)
    })
    results.push(result)
    if (result.error === undefined) return { results, succeeded: level }
    if (level === 3 || !shouldEscalate(result.error)) return { results }
    level = (level + 1) as Level
  }
}
