import { runAction } from './action-runner'
import { runAssess } from './assess'

void runAction('assess', runAssess)
