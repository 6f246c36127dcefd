import { runAction } from './action-runner'
import { runDeployFreeze } from './deploy-freeze'

void runAction('deploy-freeze', runDeployFreeze)
