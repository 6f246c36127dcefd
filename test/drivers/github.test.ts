import { createGitHubApi, type GitHubApi } from '../../src/drivers/github'
import { INCIDENT_LABELS, incidentBody, incidentFingerprint, incidentTitle } from '../../src/core/incident'
import { OperationError } from '../../src/core/errors'
import { RUN_RECORD_SCHEMA, type RunRecord } from '../../src/core/run-record'
import { start, type GitHubApiServer } from '../support/github-api-server'

const TOKEN = 'ghs_testtoken0123456789abcdefSECRET'
const OWNER = 'acme'
const REPO = 'spacetime'
const FULL = `${OWNER}/${REPO}`

function record(overrides: Partial<RunRecord> = {}): RunRecord {
  return {
    schema: RUN_RECORD_SCHEMA,
    id: '20250102-143022-ab12',
    service: 'api',
    environment: 'production',
    operation: 'rollback',
    level: 1,
    from: 'v2.4.0',
    to: 'v2.3.9',
    reason: 'error rate 34% after deploy',
    status: 'success',
    dryRun: false,
    startedAt: '2025-01-02T14:30:22.000Z',
    endedAt: '2025-01-02T14:32:40.000Z',
    durationMs: 138_000,
    steps: [],
    ...overrides
  }
}

/** What the open-incident action does: one issue per failing deployment, a comment on each re-run. */
async function fileIncident(api: GitHubApi, run: RunRecord): Promise<{ number: number; commented: boolean }> {
  await api.ensureLabels(INCIDENT_LABELS)
  const fingerprint = incidentFingerprint(run.service, run.environment, run.from ?? 'unknown')
  const open = await api.findOpenIncident(fingerprint)
  if (open) {
    await api.commentOnIssue(open.number, `re-run ${run.id}`)
    return { number: open.number, commented: true }
  }
  const created = await api.createIssue(incidentTitle(run.reason), incidentBody(run), INCIDENT_LABELS)
  return { number: created.number, commented: false }
}

describe('GitHub driver against a server checked by the OpenAPI description', () => {
  let server: GitHubApiServer
  let api: GitHubApi

  beforeEach(async () => {
    server = await start({
      roles: { octocat: 'admin', hubot: 'maintain', reader: 'read', triager: 'triage' }
    })
    api = createGitHubApi({ token: TOKEN, baseUrl: server.url, owner: OWNER, repo: REPO })
  })

  afterEach(async () => {
    await server.close()
    expect(server.violations).toEqual([])
  })

  it('creates the incident labels that are missing, once', async () => {
    server.state.repo(FULL).labels.push({
      id: 1,
      node_id: 'LA_1',
      url: `${server.url}/repos/${FULL}/labels/production`,
      name: 'production',
      description: null,
      color: '000000',
      default: false
    })

    expect(await api.ensureLabels(INCIDENT_LABELS)).toEqual(['incident', 'rollback'])
    expect(await api.ensureLabels(INCIDENT_LABELS)).toEqual([])

    const labels = server.state.repo(FULL).labels
    expect(labels.map(l => l.name).sort()).toEqual(['incident', 'production', 'rollback'])
    expect(labels.find(l => l.name === 'production')?.color).toBe('000000')
    const creates = server.requests.filter(r => r.operationId === 'issues/create-label')
    expect(creates.map(r => (r.body as { name: string }).name)).toEqual(['incident', 'rollback'])
  })

  it('files one incident for three re-runs of the same failing deployment, commenting on the re-runs', async () => {
    // Decoys: more than a page of other open incidents, and a closed one with the same fingerprint.
    for (let i = 0; i < 105; i++) await api.createIssue(`other ${i}`, `no marker ${i}`, ['incident'])
    const closed = await api.createIssue(incidentTitle(record().reason), incidentBody(record()), ['incident'])
    server.state.repo(FULL).issues[closed.number - 1]!.state = 'closed'

    const first = await fileIncident(api, record({ id: 'run-1' }))
    const second = await fileIncident(api, record({ id: 'run-2' }))
    const third = await fileIncident(api, record({ id: 'run-3' }))

    expect(first.commented).toBe(false)
    expect([second, third]).toEqual([
      { number: first.number, commented: true },
      { number: first.number, commented: true }
    ])
    const issues = server.state.repo(FULL).issues
    const incidents = issues.filter(i => i.title === incidentTitle(record().reason))
    expect(incidents.map(i => [i.number, i.state])).toEqual([
      [closed.number, 'closed'],
      [first.number, 'open']
    ])
    expect(incidents[1]!.labels.map(l => l.name)).toEqual(['incident', 'production', 'rollback'])
    expect(incidents[1]!.comments).toBe(2)
    expect(server.state.repo(FULL).comments.map(c => c.body)).toEqual(['re-run run-2', 're-run run-3'])
    // The search went past the first page of 100 open incidents.
    const searches = server.requests.filter(r => r.operationId === 'issues/list-for-repo')
    expect(searches.some(r => r.query.page === '2')).toBe(true)

    // A different failing deployment gets its own issue.
    const other = await fileIncident(api, record({ from: 'v2.5.0' }))
    expect(other).toEqual({ number: first.number + 1, commented: false })
  })

  it('reacts to a comment', async () => {
    const issue = await api.createIssue('t', 'b', [])
    const comment = await api.commentOnIssue(issue.number, '/rollback status')
    await api.addReaction(comment.id, 'eyes')
    await api.addReaction(comment.id, '+1')
    expect(server.state.repo(FULL).reactions.map(r => [r.comment_id, r.content])).toEqual([
      [comment.id, 'eyes'],
      [comment.id, '+1']
    ])
    expect(comment.html_url).toContain(`/issues/${issue.number}#issuecomment-${comment.id}`)
  })

  it('records a deployment and its failure status', async () => {
    const { id } = await api.createDeployment('v2.3.9', 'production', 'backout level 1 rollback', {
      backupId: '20250102-143022',
      level: 1
    })
    await api.setDeploymentStatus(id, 'in_progress', 'switching traffic')
    await api.setDeploymentStatus(
      id,
      'failure',
      `health check failed: ${'x'.repeat(200)}`,
      'https://api.example'
    )

    const [deployment] = server.state.repo(FULL).deployments
    expect(deployment).toMatchObject({ id, ref: 'v2.3.9', environment: 'production', task: 'deploy' })
    expect(deployment!.payload).toEqual({ backupId: '20250102-143022', level: 1 })
    const create = server.requests.find(r => r.operationId === 'repos/create-deployment')
    expect(create?.body).toMatchObject({ auto_merge: false, required_contexts: [] })

    const statuses = server.state.repo(FULL).deploymentStatuses
    expect(statuses.map(s => s.state)).toEqual(['in_progress', 'failure'])
    expect(statuses[1]!.description).toHaveLength(140)
    expect(statuses[1]!.environment_url).toBe('https://api.example')

    await api.createDeployment('v2.4.0', 'staging', 'deploy', {})
    const listed = await api.listDeployments('production')
    expect(listed.map(d => [d.id, d.ref, d.environment])).toEqual([[id, 'v2.3.9', 'production']])
  })

  it('reads role_name for the permission check; a non-collaborator is none', async () => {
    expect(await api.getPermission('octocat')).toBe('admin')
    expect(await api.getPermission('hubot')).toBe('maintain')
    expect(await api.getPermission('triager')).toBe('triage')
    expect(await api.getPermission('stranger')).toBe('none')
  })

  it('tells a pull request from this repository from one opened from a fork', async () => {
    server.addPullRequest(FULL, { number: 1, headFullName: FULL, fork: false, user: 'octocat' })
    server.addPullRequest(FULL, { number: 2, headFullName: 'mallory/spacetime', fork: true, user: 'mallory' })
    // Not marked as a fork, but another repository all the same.
    server.addPullRequest(FULL, {
      number: 3,
      headFullName: 'acme/spacetime-next',
      fork: false,
      user: 'hubot'
    })
    // The fork was deleted after the pull request was opened: GitHub answers head.repo: null.
    server.addPullRequest(FULL, { number: 4, headFullName: null, fork: true, user: 'ghost' })

    expect(await api.isForkPullRequest(1)).toBe(false)
    expect(await api.isForkPullRequest(2)).toBe(true)
    expect(await api.isForkPullRequest(3)).toBe(true)
    expect(await api.isForkPullRequest(4)).toBe(true)
    const gets = server.requests.filter(r => r.operationId === 'pulls/get')
    expect(gets.map(r => [r.path, r.status])).toEqual(
      [1, 2, 3, 4].map(n => [`/repos/${FULL}/pulls/${n}`, 200])
    )
  })

  it('treats a pull request as an issue: comments work, incidents and new issues skip it', async () => {
    const pull = server.addPullRequest(FULL, { number: 1, headFullName: FULL, fork: false, user: 'octocat' })
    const comment = await api.commentOnIssue(1, '/rollback status')
    expect(comment.html_url).toBe(`${pull.html_url}#issuecomment-${comment.id}`)
    const [issue] = server.state.repo(FULL).issues
    expect(issue?.pull_request?.url).toBe(pull.url)
    expect(issue?.comments).toBe(1)

    const created = await api.createIssue('after the pull request', 'b', [])
    expect(created.number).toBe(2)
    expect(await api.findOpenIncident('anything')).toBeUndefined()
  })

  it('fails clearly on a pull request that does not exist', async () => {
    const failure = api.isForkPullRequest(404)
    await expect(failure).rejects.toBeInstanceOf(OperationError)
    await expect(failure).rejects.toThrow(
      /^GitHub API: get pull request #404 on acme\/spacetime failed \(HTTP 404\): Not Found.* — check that pull request #404 exists on acme\/spacetime and the token can see it$/
    )
  })

  it('fails with which call, which repository and what GitHub said, and never the token', async () => {
    const failure = api.commentOnIssue(999, 'hello')
    await expect(failure).rejects.toBeInstanceOf(OperationError)
    const message = await failure.catch((e: unknown) => (e instanceof Error ? e.message : ''))
    expect(message).toMatch(/^GitHub API: comment on issue #999 on acme\/spacetime failed \(HTTP 404\)/)
    expect(message).not.toContain(TOKEN)
    expect(message).not.toContain('SECRET')
  })

  it('authenticates every call with the token, and keeps the token out of its log', async () => {
    const seen: string[] = []
    const spy = createGitHubApi({
      token: TOKEN,
      baseUrl: `${server.url}/`,
      owner: OWNER,
      repo: REPO,
      logger: {
        debug: m => seen.push(m),
        info: m => seen.push(m),
        warn: m => seen.push(m),
        error: m => seen.push(m),
        group: (_n, fn) => fn(),
        mask: () => undefined
      }
    })
    await spy.getPermission('stranger')
    await spy.ensureLabels(['incident'])
    expect(seen.length).toBeGreaterThan(0)
    expect(seen.join('\n')).not.toContain(TOKEN)
    expect(server.requests.map(r => r.authorization)).toEqual(server.requests.map(() => `token ${TOKEN}`))
  })
})

describe('the fake GitHub API server', () => {
  let server: GitHubApiServer
  beforeEach(async () => {
    server = await start()
  })
  afterEach(() => server.close())

  const send = (method: string, path: string, body?: unknown): Promise<Response> =>
    fetch(`${server.url}${path}`, {
      method,
      headers: { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body)
    })

  it('rejects an undocumented route', async () => {
    const res = await send('GET', `/repos/${FULL}/rollbacks`)
    expect(res.status).toBe(404)
    expect(server.violations).toEqual([
      expect.objectContaining({
        path: `/repos/${FULL}/rollbacks`,
        problem: expect.stringContaining('not a documented')
      })
    ])
  })

  it('rejects a method the path does not document', async () => {
    const res = await send('DELETE', `/repos/${FULL}/issues/1`)
    expect(res.status).toBe(404)
    expect(server.violations).toHaveLength(1)
  })

  it('rejects a body that does not match the operation schema', async () => {
    const res = await send('POST', `/repos/${FULL}/issues`, { body: 'no title', labels: 'incident' })
    expect(res.status).toBe(422)
    expect(server.violations).toEqual([
      expect.objectContaining({ operationId: 'issues/create', problem: expect.stringContaining('title') })
    ])
    expect(server.state.repo(FULL).issues).toEqual([])
  })

  it('rejects a reaction the API does not know', async () => {
    const res = await send('POST', `/repos/${FULL}/issues/comments/1/reactions`, { content: 'thumbsup' })
    expect(res.status).toBe(422)
    expect(server.violations[0]?.problem).toMatch(/content must be equal to one of the allowed values/)
  })

  it('serves a pull request pushed into its state, checked against the documented schema', async () => {
    const registered = server.addPullRequest(FULL, {
      number: 1,
      headFullName: FULL,
      fork: false,
      user: 'octocat'
    })
    server.state.repo(FULL).pulls.push({ ...registered, id: 99, number: 7, title: 'pushed directly' })
    const res = await send('GET', `/repos/${FULL}/pulls/7`)
    expect(res.status).toBe(200)
    expect(await res.json()).toMatchObject({
      number: 7,
      title: 'pushed directly',
      head: { repo: { fork: false } }
    })
    expect((await send('GET', `/repos/${FULL}/pulls/8`)).status).toBe(404)
    expect(server.violations).toEqual([])
  })

  it('refuses to register a pull request under a number already taken', async () => {
    await send('POST', `/repos/${FULL}/issues`, { title: 'an issue' })
    expect(() =>
      server.addPullRequest(FULL, { number: 1, headFullName: FULL, fork: false, user: 'octocat' })
    ).toThrow(/#1 is already taken/)
  })

  it('rejects a malformed path parameter and an undocumented query parameter', async () => {
    expect((await send('GET', `/repos/${FULL}/issues/abc`)).status).toBe(404)
    expect((await send('GET', `/repos/${FULL}/issues?fingerprint=x`)).status).toBe(422)
    expect((await send('GET', `/repos/${FULL}/issues?state=opened`)).status).toBe(422)
    expect(server.violations.map(v => v.problem)).toEqual([
      expect.stringContaining('issue_number'),
      expect.stringContaining('fingerprint is not documented'),
      expect.stringContaining('state=')
    ])
  })
})
