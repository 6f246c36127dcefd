import { runAction } from './action-runner'
import { runPreflight } from './preflight'

void runAction('preflight', runPreflight)
