import { runAction } from './action-runner'
import { runValidate } from './validate'

void runAction('validate', runValidate)
