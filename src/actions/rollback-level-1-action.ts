import { runAction } from './action-runner'
import { runRollbackLevel } from './rollback-level'

void runAction('rollback-level-1', ctx => runRollbackLevel(1, ctx))
