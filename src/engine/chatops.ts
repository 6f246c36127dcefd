import { CHATOPS_HELP, authorize, parseComment, type ChatOpsCommand } from '../core/chatops'
import type { Level, RunRecord } from '../core/run-record'
import type { GitHubApi } from '../drivers/github'
import { liftFreeze } from './deploy-freeze'
import { latestRunRecord } from './operation'
import type { Service } from './service'

/** The parts of an issue_comment webhook payload ChatOps reads. */
export interface CommentEvent {
  action: string
  comment: { id: number; body?: string | null; user: { login: string } | null }
  issue: { number: number; pull_request?: unknown }
}

export type ChatOpsApi = Pick<
  GitHubApi,
  'addReaction' | 'getPermission' | 'commentOnIssue' | 'isForkPullRequest'
>

export interface RollbackDispatch {
  /** undefined: the level assess recommends. */
  level?: Level
  target?: string
  environment: string
  dryRun: boolean
}

export interface ChatOpsOutcome {
  decision: 'ignored' | 'refused' | 'replied' | 'dispatch'
  reasonCode: string
  reply?: string
  dispatch?: RollbackDispatch
}

function backupsReply(service: Service | undefined): string {
  if (!service)
    return 'No backout config on this runner: `/rollback list` needs the runner beside the service.'
  const backups = service.store.list().slice(0, 15)
  if (!backups.length) return `No backups in \`${service.config.backups.dir}\` yet.`
  return [
    '| Backup | Kind | Live version | Taken |',
    '|---|---|---|---|',
    ...backups.map(
      b =>
        `| \`${b.id}\` | ${b.manifest.kind} | ${b.manifest.versions.live ?? '?'} | ${b.manifest.createdAt} |`
    )
  ].join('\n')
}

function statusReply(record: RunRecord | undefined): string {
  if (!record) return 'No rollback has run for this environment yet.'
  return (
    `Latest rollback: Level ${record.level ?? '?'} ${record.from ?? '?'} → ${record.to ?? '?'}, **${record.status}** ` +
    `at ${record.startedAt} (${((record.durationMs ?? 0) / 1000).toFixed(1)} s) — ${record.reason}`
  )
}

function planReply(command: Extract<ChatOpsCommand, { kind: 'rollback' }>, environment: string): string {
  const level = command.level ? `Level ${command.level}` : 'the level `assess` recommends'
  const gate =
    command.level && command.level >= 2
      ? `Level ${command.level} changes data: it waits for approval in the \`rollback-level-${command.level}\` environment.`
      : 'Destructive levels wait for approval in their `rollback-level-N` environment.'
  return [
    `👀 Rollback requested: ${level} on \`${environment}\`${command.target ? ` to backup \`${command.target}\`` : ''}${command.dryRun ? ' — **dry run**, nothing will change' : ''}.`,
    '',
    'Plan: assess → safety snapshot → rollback → validate → incident. ' + gate,
    'The result will be posted here.'
  ].join('\n')
}

/**
 * Handles one `/rollback` comment: eyes on receipt, then only for users with write access or more, never
 * from a fork and never for an edited comment. The body is parsed in code and never reaches a shell.
 */
export async function handleComment(
  api: ChatOpsApi,
  event: CommentEvent,
  options: { defaultEnvironment: string; service?: Service }
): Promise<ChatOpsOutcome> {
  const parsed = parseComment(event.comment.body)
  if (parsed.status === 'not-a-command') return { decision: 'ignored', reasonCode: 'not_a_command' }
  await api.addReaction(event.comment.id, 'eyes')
  const login = event.comment.user?.login ?? ''
  const role = login ? await api.getPermission(login) : 'none'
  const isFork = event.issue.pull_request ? await api.isForkPullRequest(event.issue.number) : false
  const auth = authorize({ role_name: role, isFork, action: event.action })
  const reply = async (
    decision: ChatOpsOutcome['decision'],
    reasonCode: string,
    text: string
  ): Promise<ChatOpsOutcome> => {
    await api.commentOnIssue(event.issue.number, text)
    return { decision, reasonCode, reply: text }
  }
  if (!auth.allowed) return reply('refused', 'not_authorized', `🚫 @${login}: ${auth.reason}.`)
  if (parsed.status === 'invalid')
    return reply('refused', 'bad_command', `❌ ${parsed.error}\n\n\`\`\`\n${parsed.help}\n\`\`\``)
  const command = parsed.command
  switch (command.kind) {
    case 'help':
      return reply('replied', 'help', `\`\`\`\n${CHATOPS_HELP}\n\`\`\``)
    case 'list':
      return reply('replied', 'list', backupsReply(options.service))
    case 'status':
      return reply(
        'replied',
        'status',
        statusReply(options.service && latestRunRecord(options.service.config, 'rollback'))
      )
    case 'unfreeze': {
      if (!options.service)
        return reply(
          'replied',
          'unfreeze',
          'No backout config on this runner: `/rollback unfreeze` needs the runner beside the service.'
        )
      const lifted = liftFreeze(options.service.config)
      return reply(
        'replied',
        'unfreeze',
        lifted
          ? `🔓 Deploy freeze lifted (it was held by incident #${lifted.issue} since ${lifted.since}). Deploys may run again.`
          : 'No deploy freeze is in place.'
      )
    }
    case 'rollback': {
      const environment = command.env ?? options.defaultEnvironment
      const text = planReply(command, environment)
      await api.commentOnIssue(event.issue.number, text)
      return {
        decision: 'dispatch',
        reasonCode: 'ok',
        reply: text,
        dispatch: { level: command.level, target: command.target, environment, dryRun: command.dryRun }
      }
    }
  }
}

/** The result comment, from a rollback action's result output. */
export function resultReply(record: RunRecord | undefined, runUrl?: string): string {
  if (!record) return `⚠️ The rollback did not report a result${runUrl ? ` — see ${runUrl}` : ''}.`
  const icon = record.status === 'success' ? '✅' : record.status === 'planned' ? '📝' : '❌'
  return [
    `${icon} Level ${record.level ?? '?'} rollback **${record.status}**: ${record.from ?? '?'} → ${record.to ?? '?'} in ${((record.durationMs ?? 0) / 1000).toFixed(1)} s.`,
    ...(record.error ? ['', `> ${record.error.split('\n')[0]}`] : []),
    ...(runUrl ? ['', `Run: ${runUrl}`] : [])
  ].join('\n')
}
