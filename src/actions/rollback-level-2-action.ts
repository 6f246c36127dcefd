import { runAction } from './action-runner'
import { runRollbackLevel } from './rollback-level'

void runAction('rollback-level-2', ctx => runRollbackLevel(2, ctx))
