import { runAction } from './action-runner'
import { runFleetSummary } from './fleet-summary'

void runAction('fleet-summary', runFleetSummary)
