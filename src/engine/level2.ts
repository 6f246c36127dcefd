import { UserError } from '../core/errors'
import type { LevelSteps } from './rollback-request'

/** Level 2 is being built (see the open issue); until then it refuses before anything changes. */
export const level2Steps: LevelSteps = () => {
  throw new UserError(
    'Level 2 is not available in this version of backout yet — use Level 1 (backout rollback --level 1)',
    'level_unavailable'
  )
}
