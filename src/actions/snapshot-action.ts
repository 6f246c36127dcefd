import { runAction } from './action-runner'
import { runSnapshot } from './snapshot'

void runAction('snapshot', runSnapshot)
