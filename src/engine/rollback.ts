import { UserError } from '../core/errors'
import type { Level } from '../core/run-record'
import { level1Steps } from './level1'
import { runOperation, type OperationResult } from './operation'
import type { RunStepsOptions } from './run-steps'
import type { Service } from './service'

export interface RollbackRequest {
  level: Level
  target?: string
  reason: string
  dryRun: boolean
  confirm: RunStepsOptions['confirm']
  crashAfterStep?: number
}

/** Runs one rollback level against a service: the one engine behind the CLI and the actions. */
export function rollback(service: Service, req: RollbackRequest): Promise<OperationResult> {
  const { config } = service
  if (req.level !== 1)
    throw new UserError(
      `Level ${req.level} is not available in this version of backout; Level 1 is — run backout rollback --level 1`,
      'level_unavailable'
    )
  if (req.target !== undefined) service.store.pathOf(req.target) // validates the id before anything
  const rto = config.thresholds.rtoMinutes
  return runOperation({
    config,
    operation: 'rollback',
    level: req.level,
    reason: req.reason,
    dryRun: req.dryRun,
    log: service.log,
    rtoSeconds: (req.level === 1 ? rto.level1 : req.level === 2 ? rto.level2 : rto.level3) * 60,
    confirm: req.confirm,
    crashAfterStep: req.crashAfterStep,
    steps: record => level1Steps(service, record)
  })
}
