import { runAction } from './action-runner'
import { runRollbackLevel } from './rollback-level'

void runAction('rollback-level-3', ctx => runRollbackLevel(3, ctx))
