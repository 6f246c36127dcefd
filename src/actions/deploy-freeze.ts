import { UserError } from '../core/errors'
import { liftFreeze, readFreeze } from '../engine/deploy-freeze'
import type { ActionContext, ActionOutcome } from './action-runner'

/**
 * deploy-freeze: mode check (the first step of the deploy workflow — fails while a rollback's incident holds
 * the freeze) or lift (when the incident issue is closed; with issue-number, only that incident's freeze).
 */
export function runDeployFreeze(
  ctx: ActionContext<'deploy-freeze'>
): Promise<ActionOutcome<'deploy-freeze'>> {
  const mode = ctx.input('mode') || 'check'
  if (mode !== 'check' && mode !== 'lift')
    throw new UserError(`input mode: expected check or lift, got "${mode.slice(0, 40)}"`, 'bad_input')
  const rawIssue = ctx.input('issue-number')
  if (rawIssue && !/^[1-9][0-9]{0,9}$/.test(rawIssue))
    throw new UserError(
      `input issue-number: expected an issue number, got "${rawIssue.slice(0, 20)}"`,
      'bad_input'
    )
  const config = ctx.service().config
  if (mode === 'lift') {
    const lifted = liftFreeze(config, rawIssue ? Number(rawIssue) : undefined)
    return Promise.resolve({
      decision: lifted ? 'lifted' : 'not_frozen',
      reasonCode: 'ok',
      outputs: { frozen: false, issue_number: lifted?.issue ?? '' },
      summary: lifted ? `## 🔓 Deploy freeze lifted (incident #${lifted.issue})` : undefined
    })
  }
  const freeze = readFreeze(config)
  return Promise.resolve({
    decision: freeze ? 'frozen' : 'clear',
    reasonCode: freeze ? 'deploy_frozen' : 'ok',
    outputs: { frozen: Boolean(freeze), issue_number: freeze?.issue ?? '' },
    summary: freeze ? `## 🧊 Deploys frozen by incident #${freeze.issue} since ${freeze.since}` : undefined,
    failure: freeze
      ? new UserError(
          `deploys are frozen since ${freeze.since} by incident #${freeze.issue} (${freeze.reason}) — close the ` +
            'incident or comment /rollback unfreeze when the fix is ready',
          'deploy_frozen'
        )
      : undefined
  })
}
