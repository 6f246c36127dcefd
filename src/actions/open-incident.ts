import * as core from '@actions/core'
import { UserError } from '../core/errors'
import { RUN_RECORD_SCHEMA, type RunRecord } from '../core/run-record'
import { createGitHubApi } from '../drivers/github'
import { openIncident } from '../engine/incident'
import { latestRunRecord } from '../engine/operation'
import type { ActionContext, ActionOutcome } from './action-runner'

/** The run record to report: from the `result` input (a rollback action's output), else the newest one kept. */
function recordFrom(resultInput: string, fallback: () => RunRecord | undefined): RunRecord {
  if (resultInput.trim()) {
    let parsed: unknown
    try {
      parsed = JSON.parse(resultInput)
    } catch {
      throw new UserError(
        'input result: not JSON — pass the `result` output of a backout rollback action',
        'bad_input'
      )
    }
    const record = (parsed as { record?: RunRecord }).record
    if (record?.schema !== RUN_RECORD_SCHEMA)
      throw new UserError(
        `input result: no run record of schema ${RUN_RECORD_SCHEMA} in it — pass a rollback action's result`,
        'bad_input'
      )
    return record
  }
  const kept = fallback()
  if (!kept)
    throw new UserError('no run record: pass the `result` input, or run a rollback first', 'no_record')
  return kept
}

/** open-incident: the incident issue, its post-mortem comment, and the deployment statuses. */
export async function runOpenIncident(ctx: ActionContext): Promise<ActionOutcome> {
  const token = core.getInput('token')
  if (!token)
    throw new UserError(
      'input token: empty — pass a token with issues: write (the default is github.token)',
      'bad_input'
    )
  ctx.log.mask(token)
  const [owner, repo] = (process.env.GITHUB_REPOSITORY ?? '').split('/')
  if (!owner || !repo)
    throw new UserError(
      'GITHUB_REPOSITORY is not set (owner/repo) — run this action on GitHub Actions',
      'bad_input'
    )
  const service = ctx.service()
  const record = recordFrom(core.getInput('result'), () => latestRunRecord(service.config, 'rollback'))
  const reason = core.getInput('reason')
  if (reason) record.reason = reason
  const server = process.env.GITHUB_SERVER_URL ?? 'https://github.com'
  const runUrl = process.env.GITHUB_RUN_ID
    ? `${server}/${owner}/${repo}/actions/runs/${process.env.GITHUB_RUN_ID}`
    : undefined
  const api = createGitHubApi({
    token,
    baseUrl: process.env.GITHUB_API_URL ?? 'https://api.github.com',
    owner,
    repo,
    logger: ctx.log
  })
  const result = await openIncident(service, api, {
    record,
    runUrl,
    sha: process.env.GITHUB_SHA,
    owner: process.env.GITHUB_ACTOR
  })
  return {
    decision: result.created ? 'incident_opened' : 'incident_updated',
    reasonCode: 'ok',
    outputs: { issue_number: result.issueNumber, issue_url: result.issueUrl },
    record,
    summary: `## 📣 Incident [#${result.issueNumber}](${result.issueUrl})\n\nStakeholder notification:\n\n\`\`\`\n${result.notification}\n\`\`\``
  }
}
