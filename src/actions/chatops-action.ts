import { runAction } from './action-runner'
import { runChatOps } from './chatops'

void runAction('chatops', runChatOps)
