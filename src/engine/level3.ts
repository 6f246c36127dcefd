import { UserError } from '../core/errors'
import type { LevelSteps } from './rollback-request'

/** Level 3 is being built (see the open issue); until then it refuses before anything changes. */
export const level3Steps: LevelSteps = () => {
  throw new UserError(
    'Level 3 is not available in this version of backout yet — use Level 1 (backout rollback --level 1)',
    'level_unavailable'
  )
}
