import { existsSync, readFileSync } from 'node:fs'
import { INCIDENT_LABELS } from '../core/incident'
import { UserError } from '../core/errors'
import { triggerFacts } from '../core/trigger-facts'
import { workflowOutcome, type WorkflowOutcome } from '../core/workflow-outcome'
import type { GitHubApi } from '../drivers/github'
import { openFreeze } from '../engine/deploy-freeze'
import { openIncident } from '../engine/incident'
import { readRunRecord } from '../engine/operation'
import { gitHubRepository } from './github-repository'
import type { ActionContext, ActionOutcome } from './action-runner'

/** The issue for a rollback that did not run: what the workflow saw, said plainly. */
async function fileNotRun(
  api: GitHubApi,
  outcome: Exclude<WorkflowOutcome, { kind: 'ran' }>,
  reason: string,
  runUrl: string | undefined
): Promise<{ number: number; html_url: string }> {
  const what = outcome.kind === 'approval_rejected' ? `Level ${outcome.level} approval rejected` : 'not run'
  await api.ensureLabels(INCIDENT_LABELS)
  return api.createIssue(
    `Production Rollback ${what}: ${reason}`.slice(0, 250),
    [
      `## Rollback ${what}`,
      '',
      `**Nothing was rolled back by this run.** ${outcome.why}.`,
      '',
      `Reason given: ${reason}`,
      ...(runUrl ? ['', `Run: ${runUrl}`] : []),
      '',
      'The service is still on the release that triggered this rollback: decide by hand (see the runbook) ' +
        'or run the rollback again once the approval is given.'
    ].join('\n'),
    INCIDENT_LABELS
  )
}

/**
 * open-incident: the incident issue, its post-mortem comment, and the deployment statuses — for the run
 * record this workflow run produced (its id from the level jobs' outputs), never the newest one on the host.
 */
export async function runOpenIncident(
  ctx: ActionContext<'open-incident'>
): Promise<ActionOutcome<'open-incident'>> {
  const token = ctx.input('token')
  if (!token)
    throw new UserError(
      'input token: empty — pass a token with issues: write (the default is github.token)',
      'bad_input'
    )
  ctx.log.mask(token)
  const runIdInput = ctx.input('run-id')
  if (runIdInput && !/^[0-9]{8}-[0-9]{6}-[a-z0-9]+$/.test(runIdInput))
    throw new UserError(
      `input run-id: expected a run id such as 20250102-143022-ab12, got "${runIdInput.slice(0, 40)}"`,
      'bad_input'
    )
  const failedSha = ctx.input('failed-sha')
  if (failedSha && !/^[0-9a-f]{40}$/.test(failedSha))
    throw new UserError(
      `input failed-sha: expected a 40-hex commit id, got "${failedSha.slice(0, 50)}"`,
      'bad_input'
    )
  const outcome = workflowOutcome(ctx.input('jobs'), runIdInput)
  const reason = ctx.input('reason') || 'rollback'
  const { api, runUrl } = gitHubRepository(token, ctx.log)
  if (outcome.kind !== 'ran') {
    const issue = await fileNotRun(api, outcome, reason, runUrl)
    return {
      decision: 'incident_opened',
      reasonCode: outcome.kind,
      outputs: { issue_number: issue.number, issue_url: issue.html_url, frozen: false },
      summary: `## 📣 Incident [#${issue.number}](${issue.html_url}): rollback ${outcome.kind.replace('_', ' ')}\n\n${outcome.why}`
    }
  }
  const service = ctx.service()
  const record = readRunRecord(service.config, outcome.runId)
  if (ctx.input('reason')) record.reason = reason
  const result = await openIncident(service, api, {
    record,
    runUrl,
    sha: process.env.GITHUB_SHA,
    failedSha: ctx.input('failed-sha') || undefined,
    owner: process.env.GITHUB_ACTOR,
    ...triggerFacts(readEvent())
  })
  // A rollback ran: nothing may redeploy the bad release until the incident is closed or unfrozen.
  const frozen = !record.dryRun && (record.status === 'success' || record.status === 'failed')
  if (frozen)
    openFreeze(service.config, { issue: result.issueNumber, reason: record.reason, runId: record.id })
  return {
    decision: result.created ? 'incident_opened' : 'incident_updated',
    reasonCode: 'ok',
    outputs: { issue_number: result.issueNumber, issue_url: result.issueUrl, frozen },
    record,
    summary: `## 📣 Incident [#${result.issueNumber}](${result.issueUrl})\n\nStakeholder notification:\n\n\`\`\`\n${result.notification}\n\`\`\``
  }
}

/** The triggering event (the caller's, in a reusable workflow); nothing when the runner gives none. */
function readEvent(): unknown {
  const file = process.env.GITHUB_EVENT_PATH
  if (!file || !existsSync(file)) return undefined
  try {
    return JSON.parse(readFileSync(file, 'utf8'))
  } catch {
    return undefined
  }
}
