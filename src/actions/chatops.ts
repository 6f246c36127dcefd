import { existsSync, readFileSync } from 'node:fs'
import { UserError } from '../core/errors'
import type { RunRecord } from '../core/run-record'
import { configPath } from '../drivers/config-file'
import { readRunRecord } from '../engine/operation'
import { handleComment, resultReply, type CommentEvent } from '../engine/chatops'
import type { ActionContext, ActionOutcome } from './action-runner'
import { gitHubRepository } from './github-repository'

/** The run id in a rollback action's `result` output (backout.action-result/v2), or undefined. */
export function runIdOf(result: string): string | undefined {
  if (!result.trim()) return undefined
  try {
    const parsed = JSON.parse(result) as { runId?: unknown }
    return typeof parsed.runId === 'string' && parsed.runId ? parsed.runId : undefined
  } catch {
    return undefined
  }
}

/**
 * chatops: the issue_comment event is read from GITHUB_EVENT_PATH and parsed in code — the comment body
 * never reaches a shell or an expression.
 */
export async function runChatOps(ctx: ActionContext<'chatops'>): Promise<ActionOutcome<'chatops'>> {
  const token = ctx.input('token')
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
  const { api, runUrl } = gitHubRepository(token, ctx.log)

  const hasConfig = existsSync(configPath(ctx.input('config') || undefined))
  const mode = ctx.input('mode') || 'command'
  if (mode !== 'command' && mode !== 'report')
    throw new UserError(`input mode: expected command or report, got "${mode.slice(0, 40)}"`, 'bad_input')
  if (mode === 'report') {
    // Only ever reports: an empty or unreadable report is said so, the comment is never handled again.
    const runId = runIdOf(ctx.input('report'))
    let record: RunRecord | undefined
    if (runId && hasConfig) {
      try {
        record = readRunRecord(ctx.service().config, runId)
      } catch {
        record = undefined
      }
    }
    await api.commentOnIssue(event.issue.number, resultReply(record, runUrl))
    return {
      decision: 'reported',
      reasonCode: record ? 'ok' : 'no_result',
      outputs: { should_run: false, level: '', target: '', environment: '', dry_run: false },
      record
    }
  }

  const outcome = await handleComment(api, event, {
    defaultEnvironment: ctx.input('default-environment') || 'production',
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
