/**
 * ChatOps: the `/rollback` command in a PR or issue comment, and who may run it. Strict on purpose: a
 * typo is an error that says what was wrong and what was expected, never a silently different rollback.
 * Total: any string parses to a result, nothing throws.
 */
import type { Level } from './run-record'

/** Longer comment bodies are refused unread. */
export const MAX_COMMENT_LENGTH = 4096

const BACKUP_ID = /^(rollback-safety-)?\d{8}-\d{6}$/
/** A letter or digit first (never `.` or `..`), then letters, digits, `_`, `.`, `-`. */
const ENV_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/
/**
 * The command is the comment's first line, from its first character (branch-deploy's rule, and what the
 * workflow's `startsWith(github.event.comment.body, '/rollback')` gate lets through): a command can never sit
 * in a quote, an HTML comment, a <details> block or a code block of any fence, where nobody would see it.
 */
const COMMAND_LINE = /^\/rollback(?:[ \t]|$)/

export const CHATOPS_HELP = [
  'Usage:',
  '  /rollback [level=1|2|3] [target=BACKUP_ID] [env=NAME] [--dry-run]',
  '  /rollback list      list the backups a rollback can target',
  '  /rollback status    show the latest rollback for this environment',
  '  /rollback help      show this help',
  '  /rollback unfreeze  lift the deploy freeze a rollback put on this environment',
  '',
  'level   1 quick rollback (blue/green switch), 2 full rollback, 3 point-in-time recovery;',
  '        omitted: the level the assessment recommends',
  'target  a backup id such as 20250102-143022 or rollback-safety-20250102-143022',
  'env     the environment name: letters, digits, "_", "." and "-", up to 64 characters',
  '--dry-run  plan only, change nothing',
  '',
  'The command must be the first line of the comment; nothing else in it is read.'
].join('\n')

export type ChatOpsCommand =
  | { kind: 'rollback'; level?: Level; target?: string; env?: string; dryRun: boolean }
  | { kind: 'list' }
  | { kind: 'status' }
  | { kind: 'help' }
  | { kind: 'unfreeze' }

export type ParsedComment =
  | { status: 'command'; command: ChatOpsCommand }
  /** The comment has no /rollback line: not for us, say nothing. */
  | { status: 'not-a-command' }
  /** A /rollback line that is wrong: reply with `error` and `help`. */
  | { status: 'invalid'; error: string; help: string }

/** A token as it can be quoted safely in a reply: control characters escaped, cut short, in a code span. */
function quote(token: string): string {
  if (token === '') return '(empty)'
  const short = token.length > 40 ? `${token.slice(0, 40)}…` : token
  return `\`${JSON.stringify(short).slice(1, -1).replace(/`/g, "'")}\``
}

function invalid(error: string): ParsedComment {
  return { status: 'invalid', error, help: CHATOPS_HELP }
}

/** The comment's first line when it is a /rollback command; nothing below it is ever read. */
function commandLine(body: string): string | undefined {
  const first = body.split(/\r\n|\r|\n/, 1)[0] ?? ''
  return COMMAND_LINE.test(first) ? first.trim() : undefined
}

const SUBCOMMANDS = ['list', 'status', 'help', 'unfreeze'] as const

export function parseComment(body: unknown): ParsedComment {
  if (typeof body !== 'string') return { status: 'not-a-command' }
  if (body.length > MAX_COMMENT_LENGTH) {
    return body.includes('/rollback')
      ? invalid(
          `the comment is ${body.length} characters long; commands are read from comments of at most ${MAX_COMMENT_LENGTH}`
        )
      : { status: 'not-a-command' }
  }
  const line = commandLine(body)
  if (line === undefined) return { status: 'not-a-command' }
  const tokens = line.split(/\s+/).slice(1).filter(Boolean)

  const sub = SUBCOMMANDS.find(s => s === tokens[0])
  if (sub) {
    if (tokens.length > 1)
      return invalid(`/rollback ${sub} takes no arguments, got ${tokens.slice(1).map(quote).join(' ')}`)
    return { status: 'command', command: { kind: sub } }
  }

  const command: { kind: 'rollback'; level?: Level; target?: string; env?: string; dryRun: boolean } = {
    kind: 'rollback',
    dryRun: false
  }
  const seen = new Set<string>()
  for (const token of tokens) {
    if (token === '--dry-run') {
      if (command.dryRun) return invalid('--dry-run is given twice')
      command.dryRun = true
      continue
    }
    const match = /^(level|target|env)=(.*)$/s.exec(token)
    if (!match) {
      const misplaced = SUBCOMMANDS.find(s => s === token)
      return invalid(
        misplaced
          ? `${quote(token)} must stand alone: write \`/rollback ${misplaced}\``
          : `unknown argument ${quote(token)}; expected level=N, target=BACKUP_ID, env=NAME or --dry-run`
      )
    }
    const key = match[1] as 'level' | 'target' | 'env'
    const value = match[2] ?? ''
    if (seen.has(key)) return invalid(`${key}= is given twice`)
    seen.add(key)
    if (key === 'level') {
      if (!/^[123]$/.test(value))
        return invalid(
          `${quote(token)} is not a rollback level; expected level=1 (quick rollback), 2 (full rollback) or 3 (point-in-time recovery)`
        )
      command.level = Number(value) as Level
    } else if (key === 'target') {
      if (!BACKUP_ID.test(value))
        return invalid(
          `${quote(token)} is not a backup id; expected target=YYYYMMDD-HHMMSS or target=rollback-safety-YYYYMMDD-HHMMSS (see /rollback list)`
        )
      command.target = value
    } else {
      if (!ENV_NAME.test(value) || value.includes('..'))
        return invalid(
          `${quote(token)} is not an environment name; expected env= and 1-64 letters, digits, "_", "." or "-", ` +
            'starting with a letter or digit'
        )
      command.env = value
    }
  }
  return { status: 'command', command }
}

// ---------------------------------------------------------------------------------------------------------
// Authorization.

/** Repository roles that may roll back. Triage, read and custom roles may not. */
export const ROLLBACK_ROLES = ['write', 'maintain', 'admin'] as const

export interface AuthorizeInput {
  /** role_name from GET /repos/{owner}/{repo}/collaborators/{username}/permission. */
  role_name: string
  /** The comment is on a pull request whose head is in a fork. */
  isFork: boolean
  /** The issue_comment event's action. */
  action: string
}

export type Authorization = { allowed: true } | { allowed: false; reason: string }

export function authorize(input: AuthorizeInput): Authorization {
  if (input.action !== 'created')
    return {
      allowed: false,
      reason: `comment was ${quote(input.action)}, not created: only a newly created comment can run a command`
    }
  if (input.isFork)
    return {
      allowed: false,
      reason: 'the pull request comes from a fork: rollbacks cannot be run from forks'
    }
  if (!(ROLLBACK_ROLES as readonly string[]).includes(input.role_name))
    return {
      allowed: false,
      reason: `role ${quote(input.role_name)} may not roll back; it takes ${ROLLBACK_ROLES.join(', ')} on this repository`
    }
  return { allowed: true }
}
