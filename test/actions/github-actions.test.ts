import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import examples from '@octokit/webhooks-examples'
import { createGitHubApi } from '../../src/drivers/github'
import { runAction } from '../support/action'
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
  const failed = await api.createDeployment('v2.5.0', 'sandbox', 'deploy v2.5.0', {})
  const rollback = await runAction('rollback-level-1', {
    config: sb.config,
    reason: 'error rate 30% after deploy'
  })
  expect(rollback.outputs.decision).toBe('rolled_back')

  for (let i = 0; i < 3; i++) {
    const run = await runAction(
      'open-incident',
      { config: sb.config, token: TOKEN, result: rollback.outputs.result! },
      githubEnv()
    )
    expect(run.code).toBe(0)
    expect(run.outputs.decision).toBe(i === 0 ? 'incident_opened' : 'incident_updated')
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
  expect(repo.labels.map(l => l.name).sort()).toEqual(['incident', 'rollback', 'sandbox'])
  // the post-mortem once, then a comment per re-run
  expect(repo.comments).toHaveLength(3)
  expect(repo.comments[0]!.body).toContain('Post-Mortem')
  // the failed deployment is marked failed and inactive; the rollback has its own successful deployment
  const statuses = (id: number): string[] =>
    repo.deploymentStatuses.filter(s => s.url.includes(`/deployments/${id}/`)).map(s => s.state)
  expect(statuses(failed.id).slice(0, 2)).toEqual(['failure', 'inactive'])
  const rollbacks = repo.deployments.filter(d => d.id !== failed.id)
  expect(rollbacks.length).toBeGreaterThanOrEqual(1)
  expect(statuses(rollbacks[0]!.id)).toContain('success')
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
