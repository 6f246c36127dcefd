import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import examples from '@octokit/webhooks-examples'
import { createGitHubApi } from '../../src/drivers/github'
import { ACTIONS, type ActionName } from '../../src/actions/contract'
import { runAction, type ActionRun } from '../support/action'
import { startSandbox, type TestSandbox } from '../support/cli'
import { start, type GitHubApiServer } from '../support/github-api-server'

const REPO = 'Codertocat/Hello-World'
const TOKEN = 'ghs_actiontoken_SECRET_0123456789'

let sb: TestSandbox
let server: GitHubApiServer
beforeAll(async () => {
  sb = await startSandbox()
})
const eventDirs: string[] = []
afterAll(async () => {
  await sb.down()
  for (const d of eventDirs) rmSync(d, { recursive: true, force: true })
})
beforeEach(async () => {
  server = await start({ roles: { Codertocat: 'write', reader: 'read' } })
})
afterEach(async () => {
  await server.close()
  expect(server.violations).toEqual([])
})

const githubEnv = (extra: Record<string, string> = {}): Record<string, string> => ({
  GITHUB_API_URL: server.url,
  GITHUB_REPOSITORY: REPO,
  GITHUB_SERVER_URL: 'https://github.com',
  GITHUB_RUN_ID: '4242',
  GITHUB_SHA: '6dcb09b5b57875f334f61aebed695e2e4193db5e',
  GITHUB_ACTOR: 'Codertocat',
  ...extra
})

/**
 * A real issue_comment payload from @octokit/webhooks-examples, with its body and action replaced, pointing
 * at an issue and a comment that exist on the fake server.
 */
async function commentEvent(body: string, action = 'created', login = 'Codertocat'): Promise<string> {
  const api = createGitHubApi({ token: TOKEN, baseUrl: server.url, owner: 'Codertocat', repo: 'Hello-World' })
  const issue = await api.createIssue('deploy v2.5.0', 'the deployment PR', [])
  const comment = await api.commentOnIssue(issue.number, body)
  const group = examples.find(e => e.name === 'issue_comment')!
  type CommentPayload = {
    action: string
    issue: { number: number }
    comment: { id: number; body: string; user: { login: string } }
  }
  const example = (group.examples as unknown as CommentPayload[]).find(e => e.action === 'created')!
  const event = structuredClone(example)
  event.action = action
  event.issue.number = issue.number
  event.comment.id = comment.id
  event.comment.body = body
  event.comment.user.login = login
  const dir = mkdtempSync(path.join(tmpdir(), 'backout-event-'))
  eventDirs.push(dir)
  const file = path.join(dir, 'event.json')
  writeFileSync(file, JSON.stringify(event))
  return file
}

test('open-incident: one incident issue after three runs, post-mortem comment, deployment statuses', async () => {
  const api = createGitHubApi({ token: TOKEN, baseUrl: server.url, owner: 'Codertocat', repo: 'Hello-World' })
  const previousSha = 'a'.repeat(40)
  const failedSha = 'b'.repeat(40)
  const previous = await api.createDeployment(previousSha, 'sandbox', 'deploy v2.4.9', {})
  const failed = await api.createDeployment(failedSha, 'sandbox', 'deploy v2.5.0', {})
  // a newer deployment that has nothing to do with the failure (another run, another commit)
  const newer = await api.createDeployment('c'.repeat(40), 'sandbox', 'deploy of an unrelated commit', {})
  const rollback = await runAction('rollback-level-1', {
    config: sb.config,
    reason: 'error rate 30% after deploy'
  })
  expect(rollback.outputs.decision).toBe('rolled_back')

  // The caller's event (a reusable workflow sees the caller's): the failed deploy run, when it concluded.
  const eventFile = path.join(sb.dir, 'workflow-run-event.json')
  const failedRun = 'https://github.com/Codertocat/Hello-World/actions/runs/9001'
  writeFileSync(
    eventFile,
    JSON.stringify({
      workflow_run: { conclusion: 'failure', html_url: failedRun, updated_at: '2020-01-01T00:00:00Z' }
    })
  )
  for (let i = 0; i < 3; i++) {
    const run = await runAction(
      'open-incident',
      { config: sb.config, token: TOKEN, 'run-id': rollback.outputs.run_id!, 'failed-sha': failedSha },
      githubEnv({ GITHUB_EVENT_PATH: eventFile })
    )
    expect(run.code).toBe(0)
    expect(run.outputs.decision).toBe(i === 0 ? 'incident_opened' : 'incident_updated')
    expect(run.outputs.frozen).toBe('true')
    expect(
      run.stdout
        .split('\n')
        .filter(l => !l.startsWith('::add-mask::'))
        .join('\n')
    ).not.toContain(TOKEN)
    expect(run.summary).toContain('Stakeholder notification')
  }
  const repo = server.state.repo(REPO)
  expect(repo.issues).toHaveLength(1)
  const issue = repo.issues[0]!
  expect(issue.title).toBe('Sandbox Rollback: spacetime v2.5.0 → v2.4.9: error rate 30% after deploy')
  expect(issue.labels.map(l => l.name).sort()).toEqual(['incident', 'rollback', 'sandbox'])
  expect(issue.body).toContain('v2.5.0')
  expect(issue.body).toContain('https://github.com/Codertocat/Hello-World/actions/runs/4242')
  expect(issue.body).toMatch(/Failed deployment run: .*actions\/runs\/9001/)
  expect(issue.body).toContain('2020-01-01 00:00:00')
  expect(repo.labels.map(l => l.name).sort()).toEqual(['incident', 'rollback', 'sandbox'])
  // the post-mortem once, then a comment per re-run
  expect(repo.comments).toHaveLength(3)
  expect(repo.comments[0]!.body).toContain('Post-Mortem')
  // the failed deployment is marked failed and inactive; the rollback has its own successful deployment
  const statuses = (id: number): string[] =>
    repo.deploymentStatuses.filter(s => s.url.includes(`/deployments/${id}/`)).map(s => s.state)
  // the deployment the triggering run created (by its commit) is marked — not the newest one
  expect(statuses(failed.id)).toEqual(['failure', 'inactive'])
  expect(statuses(newer.id)).toEqual([])
  expect(statuses(previous.id)).toEqual([])
  const rollbacks = repo.deployments.filter(d => ![previous.id, failed.id, newer.id].includes(d.id))
  expect(rollbacks.length).toBeGreaterThanOrEqual(1)
  // at the restored release's commit, in_progress then success
  expect(rollbacks[0]!.sha).toBe(previousSha)
  expect(statuses(rollbacks[0]!.id)).toEqual(['in_progress', 'success'])
  // one rollback deployment however often the incident step re-runs for the same rollback
  expect(rollbacks).toHaveLength(1)
})

test('chatops: /rollback from a writer is acknowledged, planned and dispatched', async () => {
  const run = await runAction(
    'chatops',
    { config: sb.config, token: TOKEN },
    githubEnv({ GITHUB_EVENT_PATH: await commentEvent('/rollback level=2 target=20250102-143022 --dry-run') })
  )
  expect(run.stdout + run.stderr).not.toContain('::error::')
  expect(run.code).toBe(0)
  expect(run.outputs).toMatchObject({
    decision: 'dispatch',
    should_run: 'true',
    level: '2',
    target: '20250102-143022',
    dry_run: 'true'
  })
  const repo = server.state.repo(REPO)
  expect(repo.reactions.map(r => r.content)).toEqual(['eyes'])
  expect(repo.comments.at(-1)!.body).toContain('rollback-level-2')
})

test('chatops: a reader, an edited comment and a bad command are refused with the reason; other comments are ignored', async () => {
  const reader = await runAction(
    'chatops',
    { config: sb.config, token: TOKEN },
    githubEnv({ GITHUB_EVENT_PATH: await commentEvent('/rollback', 'created', 'reader') })
  )
  expect(reader.outputs).toMatchObject({ decision: 'refused', should_run: 'false' })
  const edited = await runAction(
    'chatops',
    { config: sb.config, token: TOKEN },
    githubEnv({ GITHUB_EVENT_PATH: await commentEvent('/rollback', 'edited') })
  )
  expect(edited.outputs.decision).toBe('refused')
  const bad = await runAction(
    'chatops',
    { config: sb.config, token: TOKEN },
    githubEnv({ GITHUB_EVENT_PATH: await commentEvent('/rollback level=9; rm -rf /') })
  )
  expect(bad.outputs.decision).toBe('refused')
  const repo = server.state.repo(REPO)
  const replies = (): string[] => repo.comments.map(c => c.body).filter(b => !b.startsWith('/rollback'))
  expect(replies()[0]).toMatch(/may not roll back/)
  expect(replies()[1]).toMatch(/not created/)
  expect(replies()[2]).toMatch(/level/)
  const chat = await runAction(
    'chatops',
    { config: sb.config, token: TOKEN },
    githubEnv({ GITHUB_EVENT_PATH: await commentEvent('looks good to me') })
  )
  expect(chat.outputs.decision).toBe('ignored')
  expect(replies().filter(b => b !== 'looks good to me')).toHaveLength(3)
})

test('chatops: /rollback list answers with the backups on the runner', async () => {
  const run = await runAction(
    'chatops',
    { config: sb.config, token: TOKEN },
    githubEnv({ GITHUB_EVENT_PATH: await commentEvent('/rollback list') })
  )
  expect(run.outputs.decision).toBe('replied')
  expect(server.state.repo(REPO).comments.at(-1)!.body).toMatch(/\| `\d{8}-\d{6}` \| snapshot \| v2\.4\.9 \|/)
})

test('outputs: no output of any action carries a value the action masked (the runner would drop it)', async () => {
  // DB_HOST=127.0.0.1 is masked, and 127.0.0.1 is in every URL of the sandbox's run record.
  const env = 'DB_HOST=127.0.0.1\nDB_PASSWORD=pw-s3cret-0042\n'
  const runs: [ActionName, ActionRun][] = [
    ['assess', await runAction('assess', { config: sb.config, env, samples: '10' })],
    ['snapshot', await runAction('snapshot', { config: sb.config, env })],
    ['rollback-level-1', await runAction('rollback-level-1', { config: sb.config, env, 'dry-run': 'true' })],
    ['validate', await runAction('validate', { config: sb.config, env })],
    ['rollback-level-2', await runAction('rollback-level-2', { config: sb.config, env, target: 'nope' })]
  ]
  const rollback = await runAction('rollback-level-1', { config: sb.config, env })
  runs.push(['rollback-level-1', rollback])
  runs.push([
    'open-incident',
    await runAction(
      'open-incident',
      { config: sb.config, env, token: TOKEN, 'run-id': rollback.outputs.run_id! },
      githubEnv()
    )
  ])
  for (const [name, run] of runs) {
    // every output the bundle sets is one its action.yml (and contract.ts) declares
    expect(ACTIONS[name].outputs).toEqual(expect.arrayContaining(Object.keys(run.outputs)))
    expect(run.masked).toEqual(expect.arrayContaining(['127.0.0.1', 'pw-s3cret-0042']))
    for (const [key, value] of Object.entries(run.outputs))
      for (const secret of run.masked) {
        if (value.includes(secret)) throw new Error(`output ${key} contains masked ${secret}: ${value}`)
      }
    // result is there, compact, and names the run record and the full result file
    const result = JSON.parse(run.outputs.result!) as { schema: string; runId: string; resultFile: string }
    expect(result).toMatchObject({ schema: 'backout.action-result/v2', runId: run.outputs.run_id })
    expect(run.full?.decision).toBe(run.outputs.decision)
    expect(run.stdout).not.toMatch(/withheld/)
  }
  // (an earlier test rolled the sandbox back already: this one may be refused; either way it has a record)
  expect(['rolled_back', 'refused']).toContain(rollback.outputs.decision)
  expect(rollback.outputs.run_id).toMatch(/^\d{8}-\d{6}-[a-z0-9]+$/)
  // the full record is in the 0600 result file only (a rolled-back one names the 127.0.0.1 upstreams)
  expect((rollback.full?.record as { id?: string } | undefined)?.id).toBe(rollback.outputs.run_id)
  if (rollback.outputs.decision === 'rolled_back')
    expect(JSON.stringify(rollback.full?.record)).toContain('127.0.0.1')
})

test('open-incident: a rejected approval is filed as such — never as the newest rollback on the host', async () => {
  // a successful rollback exists on the host from an earlier run
  const earlier = await runAction('rollback-level-1', { config: sb.config, 'dry-run': 'true' })
  expect(earlier.outputs.run_id).toBeTruthy()
  const jobs = JSON.stringify({
    preflight: { result: 'success', outputs: {} },
    assess: { result: 'success', outputs: {} },
    snapshot: { result: 'success', outputs: {} },
    'level-1': { result: 'failure', outputs: {} },
    'level-2': { result: 'skipped', outputs: {} },
    'level-3': { result: 'skipped', outputs: {} }
  })
  const run = await runAction(
    'open-incident',
    { config: sb.config, token: TOKEN, jobs, reason: 'error rate 30%' },
    githubEnv()
  )
  expect(run.code).toBe(0)
  expect(run.outputs).toMatchObject({
    decision: 'incident_opened',
    reason_code: 'approval_rejected',
    run_id: ''
  })
  const issue = server.state.repo(REPO).issues.at(-1)!
  expect(issue.title).toBe('Production Rollback Level 1 approval rejected: error rate 30%')
  expect(issue.body).toContain('Nothing was rolled back by this run')
  expect(issue.body).not.toMatch(/success/i)
  expect(server.state.repo(REPO).deployments).toHaveLength(0)
  const none = await runAction(
    'open-incident',
    { config: sb.config, token: TOKEN, jobs: '{"snapshot":{"result":"failure","outputs":{}}}', reason: 'r' },
    githubEnv()
  )
  expect(none.outputs.reason_code).toBe('not_run')
  expect(server.state.repo(REPO).issues.at(-1)!.title).toBe('Production Rollback not run: r')
})

test('chatops mode report: only reports — an empty report never handles the comment again', async () => {
  const eventPath = await commentEvent('/rollback level=1')
  const empty = await runAction(
    'chatops',
    { config: sb.config, token: TOKEN, mode: 'report', report: '' },
    githubEnv({ GITHUB_EVENT_PATH: eventPath })
  )
  expect(empty.code).toBe(0)
  expect(empty.outputs).toMatchObject({ decision: 'reported', reason_code: 'no_result', should_run: 'false' })
  const repo = server.state.repo(REPO)
  expect(repo.reactions).toHaveLength(0)
  expect(repo.comments.map(c => c.body).filter(b => b.includes('Rollback requested'))).toHaveLength(0)
  expect(repo.comments.at(-1)!.body).toMatch(/did not report a result/)
  const rollback = await runAction('rollback-level-1', { config: sb.config })
  const reported = await runAction(
    'chatops',
    { config: sb.config, token: TOKEN, mode: 'report', report: rollback.outputs.result! },
    githubEnv({ GITHUB_EVENT_PATH: eventPath })
  )
  expect(reported.outputs).toMatchObject({ decision: 'reported', reason_code: 'ok' })
  expect(repo.comments.at(-1)!.body).toMatch(/Level 1 rollback \*\*(success|refused)\*\*/)
  expect(repo.reactions).toHaveLength(0)
})

describe('preflight: approval environments must exist with required reviewers; environment → runner and config', () => {
  const mappingDir = (): string => {
    const dir = mkdtempSync(path.join(tmpdir(), 'backout-ws-'))
    eventDirs.push(dir)
    mkdirSync(path.join(dir, '.github'))
    writeFileSync(
      path.join(dir, '.github/backout-environments.yml'),
      'production:\n  runner: [self-hosted, prod-web-1]\n  config: deploy/backout.yml\nstaging:\n  runner: [self-hosted, staging-1]\n  config: deploy/backout-staging.yml\n'
    )
    return dir
  }
  const preflight = (inputs: Record<string, string>, workspace: string): ReturnType<typeof runAction> =>
    runAction('preflight', { token: TOKEN, ...inputs }, githubEnv({ GITHUB_WORKSPACE: workspace }))

  test('missing or reviewer-less environments fail closed, naming each; opting out is explicit', async () => {
    const ws = mappingDir()
    const repo = server.state.repo(REPO)
    repo.environments.push({ name: 'rollback-level-1', reviewers: ['oncall-lead'] })
    repo.environments.push({ name: 'rollback-level-2', reviewers: [] })
    const refused = await preflight({ environment: 'production', level: '1' }, ws)
    expect(refused.code).toBe(1)
    expect(refused.outputs).toMatchObject({ decision: 'refused', reason_code: 'unprotected_environment' })
    expect(refused.stdout).toMatch(
      /rollback-level-2 has no required reviewers; rollback-level-3 does not exist/
    )
    const requested = server.requests.filter(r => r.operationId === 'repos/get-environment').map(r => r.path)
    expect(requested).toEqual([1, 2, 3].map(l => `/repos/${REPO}/environments/rollback-level-${l}`))
    // without escalation only the level asked for is entered
    const one = await preflight({ environment: 'production', level: '1', escalate: 'false' }, ws)
    expect(one.outputs).toMatchObject({ decision: 'ready', reason_code: 'ok', config: 'deploy/backout.yml' })
    expect(JSON.parse(one.outputs.runner_labels!)).toEqual(['self-hosted', 'prod-web-1'])
    const optOut = await preflight({ environment: 'staging', level: '2', 'allow-unprotected': 'true' }, ws)
    expect(optOut.outputs).toMatchObject({
      decision: 'ready',
      reason_code: 'unprotected_allowed',
      config: 'deploy/backout-staging.yml'
    })
    expect(optOut.stdout).toMatch(/::warning::allow-unprotected: rollback-level-2 has no required reviewers/)
  })

  test('an environment not in the mapping, or a bad name, is refused before any API call', async () => {
    const ws = mappingDir()
    for (const environment of ['qa', '..', 'prod;rm']) {
      const run = await preflight({ environment, level: '1' }, ws)
      expect(run.code).toBe(1)
      expect(run.outputs.decision).toBe('refused')
    }
    expect(server.requests.filter(r => r.operationId === 'repos/get-environment')).toHaveLength(0)
    // no mapping file and no runner-labels: refused, saying what to add
    const bare = mkdtempSync(path.join(tmpdir(), 'backout-ws-'))
    eventDirs.push(bare)
    const none = await preflight({ environment: 'production' }, bare)
    expect(none.outputs).toMatchObject({ decision: 'refused', reason_code: 'bad_config' })
    expect(none.stdout).toMatch(/backout-environments\.yml/)
  })
})

test('fleet-summary: N hosts result files → one table with a row per host, and one incident for the fleet', async () => {
  const ws = mkdtempSync(path.join(tmpdir(), 'backout-fleet-'))
  eventDirs.push(ws)
  const hosts = ['prod-1', 'prod-2', 'prod-3', 'prod-4']
  const row = (env: string, level: string, decision: string): string =>
    `environment=${env}\nlevel=${level}\ndecision=${decision}\nreason_code=ok\nfrom=v2.5.0\nto=v2.4.9\nseconds=3.1\nrun_id=20260102-143022-ab12\n`
  // as download-artifact lays them out: one folder per artifact
  for (const [env, level, decision] of [
    ['prod-1', '1', 'rolled_back'],
    ['prod-2', '1', 'failed'],
    ['prod-2', '2', 'rolled_back'],
    ['prod-3', '1', 'refused']
  ] as const) {
    mkdirSync(path.join(ws, 'fleet', `backout-fleet-${env}-level-${level}`), { recursive: true })
    writeFileSync(
      path.join(ws, 'fleet', `backout-fleet-${env}-level-${level}`, 'backout-fleet-row.txt'),
      row(env, level, decision)
    )
  }
  const run = await runAction(
    'fleet-summary',
    { token: TOKEN, environments: JSON.stringify(hosts), reason: 'bad release v2.5.0' },
    githubEnv({ GITHUB_WORKSPACE: ws })
  )
  expect(run.code).toBe(0)
  expect(run.outputs).toMatchObject({ decision: 'partial', hosts: '4', rolled_back: '2', failed: '2' })
  const repo = server.state.repo(REPO)
  expect(repo.issues).toHaveLength(1)
  const body = repo.issues[0]!.body!
  expect(repo.issues[0]!.title).toBe('Fleet Rollback: bad release v2.5.0')
  expect(body).toContain('| Host (environment) | Level | Outcome | Reason | From → To | Took | Run record |')
  const rows = body.split('\n').filter(l => /^\| prod-\d /.test(l))
  expect(rows.map(l => l.split('|')[1]!.trim())).toEqual(hosts)
  expect(rows[1]).toContain('| 2 | ✅ rolled_back |')
  expect(rows[3]).toContain('❌ no result')
  expect(run.summary).toContain('**2 of 4 hosts** rolled back')
})

test('deploy freeze: the incident froze deploys; the deploy check fails until /rollback unfreeze or the incident closes', async () => {
  const check = (): ReturnType<typeof runAction> => runAction('deploy-freeze', { config: sb.config })
  // the first test's incident (a rollback that ran) opened the freeze
  const frozen = await check()
  expect(frozen.code).toBe(1)
  expect(frozen.outputs).toMatchObject({ decision: 'frozen', reason_code: 'deploy_frozen', frozen: 'true' })
  expect(frozen.stdout).toMatch(/::error::deploys are frozen since .* by incident #\d+/)
  const issue = frozen.outputs.issue_number!
  // /rollback unfreeze by a writer lifts it
  const unfreeze = await runAction(
    'chatops',
    { config: sb.config, token: TOKEN },
    githubEnv({ GITHUB_EVENT_PATH: await commentEvent('/rollback unfreeze') })
  )
  expect(unfreeze.outputs).toMatchObject({
    decision: 'replied',
    reason_code: 'unfreeze',
    should_run: 'false'
  })
  expect(server.state.repo(REPO).comments.at(-1)!.body).toContain(
    `Deploy freeze lifted (it was held by incident #${issue}`
  )
  expect((await check()).outputs).toMatchObject({ decision: 'clear', frozen: 'false' })
  // closing the incident (rollback-unfreeze.yml: mode lift, issue-number) lifts only that incident's freeze
  const { openFreeze } = await import('../../src/engine/deploy-freeze')
  const { loadConfig } = await import('../../src/drivers/config-file')
  openFreeze(loadConfig(sb.config), { issue: 77, reason: 'error rate' })
  const other = await runAction('deploy-freeze', { config: sb.config, mode: 'lift', 'issue-number': '78' })
  expect(other.outputs.decision).toBe('not_frozen')
  expect((await check()).outputs.decision).toBe('frozen')
  const lifted = await runAction('deploy-freeze', { config: sb.config, mode: 'lift', 'issue-number': '77' })
  expect(lifted.outputs).toMatchObject({ decision: 'lifted', issue_number: '77' })
  expect((await check()).code).toBe(0)
})
