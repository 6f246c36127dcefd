import { UserError } from '../core/errors'
import { runAction } from './action-runner'
import { runRollbackLevel } from './rollback-level'

void runAction('backout', ctx => {
  const level = ctx.input('level') || '1'
  if (level !== '1' && level !== '2' && level !== '3')
    throw new UserError(`input level: expected 1, 2 or 3, got "${level.slice(0, 40)}"`, 'bad_input')
  return runRollbackLevel(Number(level) as 1 | 2 | 3, ctx)
})
