import { existsSync, readFileSync } from 'node:fs'
import * as core from '@actions/core'
import { UserError } from '../core/errors'
import type { RunRecord } from '../core/run-record'
import { configPath } from '../drivers/config-file'
import { createGitHubApi } from '../drivers/github'
import { handleComment, resultReply, type CommentEvent } from '../engine/chatops'
import type { ActionContext, ActionOutcome } from './action-runner'

/**
 * chatops: the issue_comment event is read from GITHUB_EVENT_PATH and parsed in code — the comment body
 * never reaches a shell or an expression.
 */
export async function runChatOps(ctx: ActionContext): Promise<ActionOutcome> {
  const token = core.getInput('token')
  if (!token) throw new UserError('input token: empty — pass a token with issues: write', 'bad_input')
  ctx.log.mask(token)
  const [owner, repo] = (process.env.GITHUB_REPOSITORY ?? '').split('/')
  const eventPath = process.env.GITHUB_EVENT_PATH
  if (!owner || !repo || !eventPath || !existsSync(eventPath))
    throw new UserError(
      'GITHUB_REPOSITORY and GITHUB_EVENT_PATH must be set — run this action on an issue_comment event',
      'bad_input'
    )
  const event = JSON.parse(readFileSync(eventPath, 'utf8')) as CommentEvent
  if (!event.comment || !event.issue)
    throw new UserError(
      'the event is not an issue_comment event — trigger this workflow on issue_comment',
      'bad_input'
    )
  const api = createGitHubApi({
    token,
    baseUrl: process.env.GITHUB_API_URL ?? 'https://api.github.com',
    owner,
    repo,
    logger: ctx.log
  })
  const server = process.env.GITHUB_SERVER_URL ?? 'https://github.com'
  const runUrl = process.env.GITHUB_RUN_ID
    ? `${server}/${owner}/${repo}/actions/runs/${process.env.GITHUB_RUN_ID}`
    : undefined

  const report = core.getInput('report')
  if (report.trim()) {
    let record: RunRecord | undefined
    try {
      record = (JSON.parse(report) as { record?: RunRecord }).record
    } catch {
      record = undefined
    }
    await api.commentOnIssue(event.issue.number, resultReply(record, runUrl))
    return {
      decision: 'replied',
      reasonCode: 'result',
      outputs: { should_run: false, level: '', target: '', environment: '', dry_run: false }
    }
  }

  const hasConfig = existsSync(configPath(core.getInput('config') || undefined))
  const outcome = await handleComment(api, event, {
    defaultEnvironment: core.getInput('default-environment') || 'production',
    service: hasConfig ? ctx.service() : undefined
  })
  const d = outcome.dispatch
  return {
    decision: outcome.decision,
    reasonCode: outcome.reasonCode,
    outputs: {
      should_run: Boolean(d),
      level: d ? String(d.level ?? 'auto') : '',
      target: d?.target ?? '',
      environment: d?.environment ?? '',
      dry_run: d?.dryRun ?? false
    },
    summary: outcome.reply ? `## backout chatops: ${outcome.decision}\n\n${outcome.reply}` : undefined
  }
}
