import { runAction } from './action-runner'
import { runOpenIncident } from './open-incident'

void runAction('open-incident', runOpenIncident)
