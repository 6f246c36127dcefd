import type { Level, RunRecord } from '../core/run-record'
import type { RunStepsOptions, Step } from './run-steps'
import type { Service } from './service'

export interface RollbackRequest {
  level: Level
  /** The backup id to roll back to (levels 2 and 3); default: the newest good snapshot. */
  target?: string
  /** Level 3: recover the database to this moment (ISO-8601) by WAL replay. */
  toTime?: string
  reason: string
  dryRun: boolean
  confirm: RunStepsOptions['confirm']
  /**
   * Level 3: go on although the emergency snapshot did not capture the database (it does not answer, or cannot be
   * written): the operator's explicit, logged decision — recorded in the run's reason and the history.
   */
  allowUncapturedDatabase?: boolean
  crashAfterStep?: number
}

/** Each level's steps, the runbook's, by name. */
export type LevelSteps = (service: Service, record: RunRecord, req: RollbackRequest) => Step[]
