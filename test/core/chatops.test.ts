import fc from 'fast-check'
import {
  CHATOPS_HELP,
  MAX_COMMENT_LENGTH,
  authorize,
  parseComment,
  type ParsedComment
} from '../../src/core/chatops'

// eslint-disable-next-line @typescript-eslint/no-require-imports
const webhookExamples = require('@octokit/webhooks-examples') as { name: string; examples: unknown[] }[]

interface IssueCommentEvent {
  action: string
  comment: { body: string; user: { login: string }; author_association: string }
  issue: { pull_request?: unknown }
}

const issueCommentExamples = (webhookExamples.find(e => e.name === 'issue_comment')?.examples ??
  []) as IssueCommentEvent[]

function errorOf(result: ParsedComment): string {
  if (result.status !== 'invalid') throw new Error(`expected invalid, got ${JSON.stringify(result)}`)
  return result.error
}

describe('parseComment', () => {
  it.each([
    ['/rollback', { kind: 'rollback', dryRun: false }],
    ['/rollback level=2', { kind: 'rollback', level: 2, dryRun: false }],
    [
      '/rollback level=1 target=20250102-143022 env=production --dry-run',
      { kind: 'rollback', level: 1, target: '20250102-143022', env: 'production', dryRun: true }
    ],
    [
      '/rollback --dry-run env=eu-west.prod_2 target=rollback-safety-20250102-143022 level=3',
      {
        kind: 'rollback',
        level: 3,
        target: 'rollback-safety-20250102-143022',
        env: 'eu-west.prod_2',
        dryRun: true
      }
    ],
    ['/rollback list', { kind: 'list' }],
    ['/rollback status', { kind: 'status' }],
    ['/rollback help', { kind: 'help' }],
    ['/rollback   level=1  \t', { kind: 'rollback', level: 1, dryRun: false }],
    [
      '/rollback level=1\nbecause checkout is down\n/rollback level=3',
      { kind: 'rollback', level: 1, dryRun: false }
    ]
  ])('%j is a command', (body, command) => {
    expect(parseComment(body)).toEqual({ status: 'command', command })
  })

  it.each([
    ['after text', 'The deploy broke checkout.\r\n/rollback level=1'],
    ['in a quote', '> /rollback level=3'],
    ['in a code block', '```\n/rollback level=3\n```'],
    ['in a longer fence (a ```` block holding ```)', 'see:\n````\n```\n/rollback level=3\n````'],
    ['in a ~~~ fence', '~~~\n/rollback level=3\n~~~'],
    ['in an HTML comment', '<!--\n/rollback level=3\n-->'],
    ['in an HTML comment on one line', '<!-- /rollback level=3 -->'],
    ['in <details>', '<details><summary>log</summary>\n\n/rollback level=3\n</details>'],
    ['indented', '  /rollback level=1'],
    ['an indented code block', '    /rollback level=3'],
    ['after a blank line', '\n/rollback level=1']
  ])('a /rollback %s is not a command: only the first line, from its first character, is', (_what, body) => {
    expect(parseComment(body)).toEqual({ status: 'not-a-command' })
  })

  it.each(['', 'LGTM', 'please /rollback later', '/rollbacks', '/Rollback level=1', '`/rollback`'])(
    '%j is not a command',
    body => {
      expect(parseComment(body)).toEqual({ status: 'not-a-command' })
    }
  )

  it.each([
    [
      '/rollback level=4',
      /`level=4` is not a rollback level; expected level=1 \(quick rollback\), 2 .* or 3/
    ],
    ['/rollback level=01', /not a rollback level/],
    ['/rollback level=', /not a rollback level/],
    ['/rollback target=latest', /`target=latest` is not a backup id; expected target=YYYYMMDD-HHMMSS/],
    ['/rollback target=20250102-1430', /not a backup id/],
    ['/rollback target=../../etc/passwd', /not a backup id/],
    ['/rollback env=prod;rm', /`env=prod;rm` is not an environment name/],
    [`/rollback env=${'e'.repeat(65)}`, /not an environment name/],
    ['/rollback env=..', /`env=..` is not an environment name/],
    ['/rollback env=.', /not an environment name/],
    ['/rollback env=prod..x', /not an environment name/],
    ['/rollback env=-prod', /not an environment name/],
    ['/rollback level=1 level=2', /level= is given twice/],
    ['/rollback --dry-run --dry-run', /--dry-run is given twice/],
    [
      '/rollback --force',
      /unknown argument `--force`; expected level=N, target=BACKUP_ID, env=NAME or --dry-run/
    ],
    ['/rollback lvl=1', /unknown argument/],
    ['/rollback LEVEL=1', /unknown argument/],
    ['/rollback level=1 list', /`list` must stand alone: write `\/rollback list`/],
    ['/rollback list all', /\/rollback list takes no arguments, got `all`/]
  ])('%j is refused: %s', (body, message) => {
    const result = parseComment(body)
    expect(errorOf(result)).toMatch(message)
    expect(result).toMatchObject({ help: CHATOPS_HELP })
  })

  it('refuses an over-long comment that mentions /rollback, and ignores one that does not', () => {
    const long = 'x'.repeat(MAX_COMMENT_LENGTH)
    expect(errorOf(parseComment(`/rollback level=1\n${long}`))).toMatch(/at most 4096/)
    expect(parseComment(long + 'y')).toEqual({ status: 'not-a-command' })
    expect(parseComment(long)).toEqual({ status: 'not-a-command' })
  })

  it('quotes bad input inertly: escaped, cut short, in a code span', () => {
    const error = errorOf(parseComment(`/rollback @everyone\u0007\`${'z'.repeat(100)}`))
    expect(error).toContain("`@everyone\\u0007'")
    expect(error).toContain('…`')
    expect(error.length).toBeLessThan(200)
  })

  it('never throws, on any string or non-string', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ unit: 'binary' }),
          fc.string({ unit: 'binary' }).map(s => `/rollback ${s}`),
          fc
            .array(
              fc.constantFrom(
                'level=1',
                'level=9',
                'target=20250102-143022',
                'env=x',
                '--dry-run',
                'list',
                '\n',
                ' '
              )
            )
            .map(parts => `/rollback ${parts.join(' ')}`)
        ),
        body => {
          const result = parseComment(body)
          expect(['command', 'not-a-command', 'invalid']).toContain(result.status)
        }
      ),
      { numRuns: 2000 }
    )
    for (const odd of [undefined, null, 42, {}, ['/rollback'], '\u0000/rollback', '/rollback\u2028level=1'])
      expect(() => parseComment(odd)).not.toThrow()
    expect(parseComment(`/rollback ${'level=1 '.repeat(1_000_000)}`).status).toBe('invalid')
  })
})

describe('authorize', () => {
  it.each(['write', 'maintain', 'admin'])('allows %s on a created comment', role => {
    expect(authorize({ role_name: role, isFork: false, action: 'created' })).toEqual({ allowed: true })
  })

  it.each(['read', 'triage', 'none', 'Admin', '', 'security-engineer'])('refuses role %j', role => {
    const result = authorize({ role_name: role, isFork: false, action: 'created' })
    expect(result).toMatchObject({ allowed: false, reason: expect.stringContaining('may not roll back') })
  })

  it('refuses edited and deleted comments, and forks, whatever the role', () => {
    expect(authorize({ role_name: 'admin', isFork: false, action: 'edited' })).toMatchObject({
      allowed: false,
      reason: expect.stringContaining('only a newly created comment')
    })
    expect(authorize({ role_name: 'admin', isFork: false, action: 'deleted' }).allowed).toBe(false)
    expect(authorize({ role_name: 'admin', isFork: true, action: 'created' })).toMatchObject({
      allowed: false,
      reason: expect.stringContaining('fork')
    })
  })
})

describe('a real issue_comment webhook payload', () => {
  // role_name comes from the collaborator permission API, not the payload; this is what it would say for
  // the example's author (author_association OWNER).
  const roleOf: Record<string, string> = { Codertocat: 'admin' }

  it('has created and edited examples to work with', () => {
    const actions = new Set(issueCommentExamples.map(e => e.action))
    expect([...actions]).toEqual(expect.arrayContaining(['created', 'edited']))
  })

  it.each(issueCommentExamples.map((e, i) => [i, e.action, e] as const))(
    'example %i (%s): parses the command and authorizes only a created comment',
    (_i, action, event) => {
      const payload = structuredClone(event)
      payload.comment.body = '/rollback level=1 env=production --dry-run\nCheckout is down since the deploy.'
      expect(payload.comment.author_association).toBe('OWNER')

      expect(parseComment(payload.comment.body)).toEqual({
        status: 'command',
        command: { kind: 'rollback', level: 1, env: 'production', dryRun: true }
      })
      const decision = authorize({
        role_name: roleOf[payload.comment.user.login] ?? 'none',
        isFork: false,
        action: payload.action
      })
      expect(decision.allowed).toBe(action === 'created')

      // The same author with only read access is refused even on a created comment.
      expect(authorize({ role_name: 'read', isFork: false, action: 'created' }).allowed).toBe(false)
      // Untouched, the example's own comment is not a command.
      expect(parseComment(event.comment.body)).toEqual({ status: 'not-a-command' })
    }
  )
})
