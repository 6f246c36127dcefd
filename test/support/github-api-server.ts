/**
 * A local HTTP server posing as the GitHub REST API, for tests. Every request is checked against GitHub's
 * published OpenAPI description (@octokit/openapi): the method and path must be a documented operation,
 * path and query parameters must match their schemas, and a JSON body must validate against the
 * operation's requestBody schema. A request that does not is answered 4xx and recorded in `violations`.
 * Every 2xx response the server sends is validated against the documented response schema as well, so
 * the fake cannot drift into shapes GitHub never returns.
 *
 * State lives in memory, per repository, and covers what backout uses: issues, issue comments, labels,
 * reactions on issue comments, collaborator permissions, deployments and deployment statuses, and pull
 * requests (read only; register them with `addPullRequest`).
 */
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import Ajv, { type ValidateFunction } from 'ajv'
import addFormats from 'ajv-formats'
import { fullFormats } from 'ajv-formats/dist/formats'

// ---------------------------------------------------------------------------------------------------------
// The OpenAPI description, loaded once per test file (jest gives each file its own module registry).

interface Parameter {
  name: string
  in: 'path' | 'query' | 'header' | 'cookie'
  required?: boolean
  schema?: object
}
type Ref = { $ref: string }
interface Operation {
  operationId: string
  parameters?: (Parameter | Ref)[]
  requestBody?: { required?: boolean; content?: Record<string, { schema?: object }> }
  responses?: Record<string, { content?: Record<string, { schema?: object }> } | Ref>
}
type PathItem = { parameters?: (Parameter | Ref)[] } & Partial<Record<(typeof METHODS)[number], Operation>>
interface Spec {
  paths: Record<string, PathItem>
  components: {
    schemas: Record<string, { properties?: Record<string, { properties?: Record<string, object> }> }>
    parameters: Record<string, Parameter>
    responses: Record<string, { content?: Record<string, { schema?: object }> }>
  }
}

const SPEC_ID = 'api.github.com.json'

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options'] as const

interface Route {
  template: string
  pattern: RegExp
  names: string[]
  literals: number
  item: PathItem
}

interface Contract {
  spec: Spec
  ajv: Ajv
  routes: Route[]
  validators: Map<string, ValidateFunction>
}

let contract: Contract | undefined

function loadContract(): Contract {
  if (contract) return contract
  const file = require.resolve('@octokit/openapi/generated/api.github.com.json')
  const spec = JSON.parse(readFileSync(file, 'utf8')) as Spec
  const ajv = new Ajv({ strict: false, allErrors: true, logger: false })
  addFormats(ajv)
  // GitHub answers "" for an unset URL (a deployment status's target_url) that its description calls a uri.
  const uri = fullFormats.uri as (value: string) => boolean
  ajv.addFormat('uri', (value: string) => value === '' || uri(value))
  // GitHub answers head.repo: null for a pull request whose fork was deleted; older descriptions (this
  // one included) call it a required repository (github/rest-api-description#424, fixed upstream).
  const head = spec.components.schemas['pull-request']?.properties?.head?.properties
  if (head?.repo) head.repo = { ...head.repo, nullable: true }
  ajv.addSchema({ $id: SPEC_ID, components: { schemas: toJsonSchema(spec.components.schemas) } }, SPEC_ID)
  const routes = Object.entries(spec.paths).map(([template, item]) => {
    const segments = template.split('/')
    const names: string[] = []
    const pattern = segments
      .map(segment => {
        const param = /^\{(.+)\}$/.exec(segment)
        if (!param) return segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
        names.push(param[1] ?? '')
        return '([^/]*)'
      })
      .join('/')
    const literals = segments.filter(s => !s.startsWith('{')).length
    return { template, pattern: new RegExp(`^${pattern}$`), names, literals, item }
  })
  // The most literal template wins: /issues/comments before /issues/{issue_number}.
  routes.sort((a, b) => b.literals - a.literals)
  contract = { spec, ajv, routes, validators: new Map() }
  return contract
}

/**
 * OpenAPI 3.0 → JSON Schema for ajv: `nullable: true` becomes "or null", and local $refs point into the
 * registered spec document.
 */
function toJsonSchema(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(toJsonSchema)
  if (!node || typeof node !== 'object') return node
  const out: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(node as Record<string, unknown>)) {
    if (key === 'nullable' || key === 'example' || key === 'examples') continue
    if (key === '$ref' && typeof value === 'string' && value.startsWith('#/')) out[key] = SPEC_ID + value
    else out[key] = toJsonSchema(value)
  }
  if ((node as { nullable?: unknown }).nullable === true) return { anyOf: [out, { type: 'null' }] }
  return out
}

function validatorFor(key: string, schema: object): ValidateFunction {
  const c = loadContract()
  let validate = c.validators.get(key)
  if (!validate) {
    validate = c.ajv.compile(toJsonSchema(schema) as object)
    c.validators.set(key, validate)
  }
  return validate
}

function resolveParameter(p: Parameter | Ref): Parameter | undefined {
  if (!('$ref' in p)) return p
  return loadContract().spec.components.parameters[p.$ref.replace('#/components/parameters/', '')]
}

function errorText(validate: ValidateFunction): string {
  return (validate.errors ?? [])
    .slice(0, 5)
    .map(e => `${e.instancePath || '(root)'} ${e.message ?? 'is invalid'}`)
    .join('; ')
}

/** Query and path values arrive as strings; coerce them to the schema's scalar type before validating. */
function coerce(raw: string, schema: object): unknown {
  const type = (schema as { type?: unknown }).type
  if (type === 'integer') return /^-?\d+$/.test(raw) ? Number(raw) : raw
  if (type === 'number') return raw.trim() !== '' && !Number.isNaN(Number(raw)) ? Number(raw) : raw
  if (type === 'boolean') return raw === 'true' ? true : raw === 'false' ? false : raw
  return raw
}

/** One HTTP request as the contract check sees it. */
interface Call {
  method: string
  path: string
  query: URLSearchParams
  rawBody: string
  contentType: string
}

type Checked =
  | { ok: true; operationId: string; operation: Operation; params: Record<string, string>; body: unknown }
  | { ok: false; operationId?: string; status: number; problem: string }

/**
 * Checks a request against the description: a documented operation, well-formed path parameters, required
 * and documented query parameters only, and a JSON body valid against the requestBody schema.
 */
function checkRequest(call: Call): Checked {
  const { method, path, query, rawBody, contentType } = call
  const lower = method.toLowerCase()
  const route = loadContract().routes.find(r => r.pattern.test(path))
  const verb = METHODS.find(m => m === lower)
  const operation = route && verb ? route.item[verb] : undefined
  if (!route || !operation)
    return { ok: false, status: 404, problem: `${method} ${path} is not a documented GitHub REST operation` }
  const { operationId } = operation
  const reject = (status: number, problem: string): Checked => ({ ok: false, operationId, status, problem })
  const declared = [...(route.item.parameters ?? []), ...(operation.parameters ?? [])]
    .map(resolveParameter)
    .filter((p): p is Parameter => p !== undefined)

  const values = route.pattern.exec(path)?.slice(1) ?? []
  const params: Record<string, string> = {}
  for (const [i, name] of route.names.entries()) {
    let value: string
    try {
      value = decodeURIComponent(values[i] ?? '')
    } catch {
      return reject(404, `path parameter ${name} is not valid percent-encoding`)
    }
    if (value === '') return reject(404, `path parameter ${name} is empty`)
    const schema = declared.find(p => p.in === 'path' && p.name === name)?.schema
    if (schema) {
      const validate = validatorFor(`path:${route.template}:${name}`, schema)
      if (!validate(coerce(value, schema)))
        return reject(404, `path parameter ${name}=${JSON.stringify(value)}: ${errorText(validate)}`)
    }
    params[name] = value
  }

  const queryParams = declared.filter(p => p.in === 'query')
  for (const p of queryParams)
    if (p.required && !query.has(p.name)) return reject(422, `required query parameter ${p.name} is missing`)
  for (const [name, value] of query) {
    const p = queryParams.find(q => q.name === name)
    if (!p) return reject(422, `query parameter ${name} is not documented for ${operationId}`)
    if (p.schema) {
      const validate = validatorFor(`query:${operationId}:${name}`, p.schema)
      if (!validate(coerce(value, p.schema)))
        return reject(422, `query parameter ${name}=${JSON.stringify(value)}: ${errorText(validate)}`)
    }
  }

  let body: unknown
  const bodySpec = operation.requestBody
  if (rawBody.trim() !== '') {
    if (!bodySpec) return reject(422, `${operationId} takes no request body`)
    if (!contentType.toLowerCase().startsWith('application/json'))
      return reject(415, `content-type ${JSON.stringify(contentType)} is not application/json`)
    try {
      body = JSON.parse(rawBody)
    } catch {
      return reject(400, 'Problems parsing JSON')
    }
  } else if (bodySpec?.required) return reject(422, `${operationId} requires a JSON body`)
  const bodySchema = bodySpec?.content?.['application/json']?.schema
  if (body !== undefined && bodySchema) {
    const validate = validatorFor(`body:${operationId}`, bodySchema)
    if (!validate(body)) return reject(422, `request body: ${errorText(validate)}`)
  }
  return { ok: true, operationId, operation, params, body }
}

/** What is wrong with the fake's own answer, measured against what GitHub documents for that status. */
function checkResponse(operation: Operation, reply: { status: number; body?: unknown }): string | undefined {
  const documented = operation.responses?.[String(reply.status)]
  if (!documented) return `the fake answered ${reply.status}, which is not documented`
  const schema = '$ref' in documented ? undefined : documented.content?.['application/json']?.schema
  if (!schema) return undefined
  const validate = validatorFor(`response:${operation.operationId}:${reply.status}`, schema)
  return validate(reply.body) ? undefined : `the fake's ${reply.status} response: ${errorText(validate)}`
}

// ---------------------------------------------------------------------------------------------------------
// GitHub-shaped records.

export interface User {
  login: string
  id: number
  node_id: string
  avatar_url: string
  gravatar_id: string
  url: string
  html_url: string
  followers_url: string
  following_url: string
  gists_url: string
  starred_url: string
  subscriptions_url: string
  organizations_url: string
  repos_url: string
  events_url: string
  received_events_url: string
  type: string
  site_admin: boolean
}
export interface Label {
  id: number
  node_id: string
  url: string
  name: string
  description: string | null
  color: string
  default: boolean
}
export interface Issue {
  id: number
  node_id: string
  number: number
  title: string
  body: string | null
  state: 'open' | 'closed'
  state_reason: string | null
  labels: Label[]
  user: User
  assignee: null
  assignees: User[]
  milestone: null
  locked: boolean
  comments: number
  url: string
  repository_url: string
  labels_url: string
  comments_url: string
  events_url: string
  html_url: string
  closed_at: string | null
  created_at: string
  updated_at: string
  author_association: string
  /** Present when the issue is a pull request, as on GitHub. */
  pull_request?: {
    url: string
    html_url: string
    diff_url: string
    patch_url: string
    merged_at: string | null
  }
}
export interface IssueComment {
  id: number
  node_id: string
  url: string
  html_url: string
  issue_url: string
  body: string
  user: User
  created_at: string
  updated_at: string
  author_association: string
}
export interface Reaction {
  id: number
  node_id: string
  user: User
  content: string
  created_at: string
  /** Not part of GitHub's shape; kept out of responses. */
  comment_id: number
}
export interface Deployment {
  id: number
  node_id: string
  url: string
  sha: string
  ref: string
  task: string
  payload: Record<string, unknown> | string
  environment: string
  original_environment: string
  description: string | null
  creator: User
  created_at: string
  updated_at: string
  statuses_url: string
  repository_url: string
  transient_environment: boolean
  production_environment: boolean
}
export interface DeploymentStatus {
  id: number
  node_id: string
  url: string
  state: string
  creator: User
  description: string
  environment: string
  target_url: string
  log_url: string
  environment_url: string
  deployment_url: string
  repository_url: string
  created_at: string
  updated_at: string
  /** Not part of GitHub's shape; kept out of responses. */
  deployment_id: number
}

export interface Repository {
  id: number
  node_id: string
  name: string
  full_name: string
  owner: User
  private: boolean
  html_url: string
  description: string | null
  fork: boolean
  url: string
  archive_url: string
  assignees_url: string
  blobs_url: string
  branches_url: string
  collaborators_url: string
  comments_url: string
  commits_url: string
  compare_url: string
  contents_url: string
  contributors_url: string
  deployments_url: string
  downloads_url: string
  events_url: string
  forks_url: string
  git_commits_url: string
  git_refs_url: string
  git_tags_url: string
  git_url: string
  issue_comment_url: string
  issue_events_url: string
  issues_url: string
  keys_url: string
  labels_url: string
  languages_url: string
  merges_url: string
  milestones_url: string
  notifications_url: string
  pulls_url: string
  releases_url: string
  ssh_url: string
  stargazers_url: string
  statuses_url: string
  subscribers_url: string
  subscription_url: string
  tags_url: string
  teams_url: string
  trees_url: string
  clone_url: string
  mirror_url: string | null
  hooks_url: string
  svn_url: string
  homepage: string | null
  language: string | null
  forks: number
  forks_count: number
  stargazers_count: number
  watchers: number
  watchers_count: number
  size: number
  default_branch: string
  open_issues: number
  open_issues_count: number
  has_issues: boolean
  has_projects: boolean
  has_wiki: boolean
  has_pages: boolean
  has_downloads: boolean
  archived: boolean
  disabled: boolean
  license: null
  pushed_at: string | null
  created_at: string | null
  updated_at: string | null
}
/** One end of a pull request. */
export interface PullRequestRef {
  label: string
  ref: string
  sha: string
  user: User
  /** null on the head of a pull request whose fork was deleted. */
  repo: Repository | null
}
export interface PullRequest {
  id: number
  node_id: string
  number: number
  url: string
  html_url: string
  diff_url: string
  patch_url: string
  issue_url: string
  commits_url: string
  review_comments_url: string
  review_comment_url: string
  comments_url: string
  statuses_url: string
  state: 'open' | 'closed'
  locked: boolean
  title: string
  user: User
  body: string | null
  labels: Label[]
  milestone: null
  active_lock_reason: string | null
  created_at: string
  updated_at: string
  closed_at: string | null
  merged_at: string | null
  merge_commit_sha: string | null
  assignee: null
  assignees: User[]
  requested_reviewers: User[]
  requested_teams: never[]
  head: PullRequestRef
  base: PullRequestRef & { repo: Repository }
  _links: Record<
    'self' | 'html' | 'issue' | 'comments' | 'review_comments' | 'review_comment' | 'commits' | 'statuses',
    { href: string }
  >
  author_association: string
  auto_merge: null
  draft: boolean
  merged: boolean
  mergeable: boolean | null
  rebaseable: boolean | null
  mergeable_state: string
  merged_by: User | null
  comments: number
  review_comments: number
  maintainer_can_modify: boolean
  commits: number
  additions: number
  deletions: number
  changed_files: number
}

/** What `addPullRequest` needs; the rest of the pull request is filled in. */
export interface PullRequestSpec {
  number: number
  /** The head branch's repository ("owner/repo"), or null when that fork was deleted. */
  headFullName: string | null
  /** Whether the head repository is a fork. */
  fork: boolean
  /** The author's login. */
  user: string
  title?: string
  body?: string
  /** The head branch; default "feature". */
  headRef?: string
  /** The base branch; default "main". */
  baseRef?: string
}

/** An environment as the fake keeps it: its name and the logins of its required reviewers. */
export interface EnvironmentSpec {
  name: string
  reviewers: string[]
  preventSelfReview?: boolean
}

export interface RepoState {
  /** Environments created in the repository settings (none until a test adds one). */
  environments: EnvironmentSpec[]
  labels: Label[]
  issues: Issue[]
  /** Pull requests; each should have an issue of the same number (addPullRequest creates both). */
  pulls: PullRequest[]
  comments: IssueComment[]
  reactions: Reaction[]
  deployments: Deployment[]
  deploymentStatuses: DeploymentStatus[]
}

export interface ServerState {
  /** Keyed by "owner/repo". */
  repos: Map<string, RepoState>
  /** login → role_name, for GET /repos/{owner}/{repo}/collaborators/{username}/permission. */
  roles: Map<string, string>
  /** The repository's state, created empty on first use. */
  repo(fullName: string): RepoState
}

export interface Violation {
  method: string
  path: string
  /** The documented operation, when the route matched one. */
  operationId?: string
  problem: string
}

export interface RecordedRequest {
  method: string
  path: string
  operationId?: string
  query: Record<string, string>
  body?: unknown
  /** The authorization header, as sent. */
  authorization?: string
  status: number
}

export interface GitHubApiServer {
  /** Base URL for octokit / GITHUB_API_URL, e.g. http://127.0.0.1:41234 */
  url: string
  close(): Promise<void>
  state: ServerState
  violations: Violation[]
  requests: RecordedRequest[]
  /**
   * Registers a pull request on the base repository `fullName` ("owner/repo"), with its issue (same number,
   * carrying `pull_request`) so issue comments on it work. Throws if that number is already taken.
   */
  addPullRequest(fullName: string, spec: PullRequestSpec): PullRequest
}

export interface ServerOptions {
  /** login → role_name (admin, maintain, write, triage, read or a custom role). */
  roles?: Record<string, string>
  /** The login every write is attributed to (the token's owner). */
  actor?: string
}

// ---------------------------------------------------------------------------------------------------------
// The server.

interface Reply {
  status: number
  body?: unknown
  headers?: Record<string, string>
}

interface Context {
  operationId: string
  params: Record<string, string>
  query: URLSearchParams
  body: Record<string, unknown>
  repo: RepoState
  fullName: string
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string
  ) {
    super(message)
  }
}

const LEGACY_PERMISSION: Record<string, string> = {
  admin: 'admin',
  maintain: 'write',
  write: 'write',
  triage: 'read',
  read: 'read'
}

type Handler = (ctx: Context, path: string) => Reply

interface Fake {
  /** One handler per implemented operationId. */
  handlers: Record<string, Handler>
  addPullRequest: GitHubApiServer['addPullRequest']
}

/** The fake's behaviour over the in-memory state. */
function fakeGitHub(state: ServerState, base: string, actorLogin: string): Fake {
  let nextId = 1000
  const newId = (): number => nextId++
  const web = 'https://github.com'
  const now = (): string => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z')

  const user = (login: string, id = 41898282): User => ({
    login,
    id,
    node_id: `MDQ6VXNlcj${id}`,
    avatar_url: `https://avatars.githubusercontent.com/u/${id}?v=4`,
    gravatar_id: '',
    url: `${base}/users/${encodeURIComponent(login)}`,
    html_url: `${web}/${encodeURIComponent(login)}`,
    followers_url: `${base}/users/${encodeURIComponent(login)}/followers`,
    following_url: `${base}/users/${encodeURIComponent(login)}/following{/other_user}`,
    gists_url: `${base}/users/${encodeURIComponent(login)}/gists{/gist_id}`,
    starred_url: `${base}/users/${encodeURIComponent(login)}/starred{/owner}{/repo}`,
    subscriptions_url: `${base}/users/${encodeURIComponent(login)}/subscriptions`,
    organizations_url: `${base}/users/${encodeURIComponent(login)}/orgs`,
    repos_url: `${base}/users/${encodeURIComponent(login)}/repos`,
    events_url: `${base}/users/${encodeURIComponent(login)}/events{/privacy}`,
    received_events_url: `${base}/users/${encodeURIComponent(login)}/received_events`,
    type: login.endsWith('[bot]') ? 'Bot' : 'User',
    site_admin: false
  })
  const actor = user(actorLogin)

  const label = (
    fullName: string,
    name: string,
    color = 'ededed',
    description: string | null = null
  ): Label => ({
    id: newId(),
    node_id: `LA_${nextId}`,
    url: `${base}/repos/${fullName}/labels/${encodeURIComponent(name)}`,
    name,
    description,
    color,
    default: false
  })

  const findLabel = (repo: RepoState, name: string): Label | undefined =>
    repo.labels.find(l => l.name.toLowerCase() === name.toLowerCase())

  const labelsFrom = (ctx: Context, raw: unknown): Label[] => {
    if (!Array.isArray(raw)) return []
    return raw.map(item => {
      const named = item && typeof item === 'object' ? (item as { name?: unknown }).name : undefined
      const name = typeof item === 'string' ? item : typeof named === 'string' ? named : ''
      let found = findLabel(ctx.repo, name)
      if (!found) {
        // GitHub creates labels that do not exist yet when an issue is created with them.
        found = label(ctx.fullName, name)
        ctx.repo.labels.push(found)
      }
      return found
    })
  }

  const issueOr404 = (ctx: Context): Issue => {
    const issue = ctx.repo.issues.find(i => i.number === Number(ctx.params.issue_number))
    if (!issue) throw new HttpError(404, 'Not Found')
    return issue
  }

  /** Issues and pull requests share one sequence of numbers per repository. */
  const nextNumber = (repo: RepoState): number =>
    Math.max(0, ...repo.issues.map(i => i.number), ...repo.pulls.map(p => p.number)) + 1

  const newIssue = (
    fullName: string,
    number: number,
    fields: Pick<Issue, 'title' | 'body' | 'labels' | 'user' | 'html_url'>
  ): Issue => {
    const issueUrl = `${base}/repos/${fullName}/issues/${number}`
    const at = now()
    return {
      id: newId(),
      node_id: `I_kwDO${nextId}`,
      number,
      state: 'open',
      state_reason: null,
      assignee: null,
      assignees: [],
      milestone: null,
      locked: false,
      comments: 0,
      url: issueUrl,
      repository_url: `${base}/repos/${fullName}`,
      labels_url: `${issueUrl}/labels{/name}`,
      comments_url: `${issueUrl}/comments`,
      events_url: `${issueUrl}/events`,
      closed_at: null,
      created_at: at,
      updated_at: at,
      author_association: 'NONE',
      ...fields
    }
  }

  /** A stable id per name, so a login or a repository keeps its id across calls. */
  const idOf = (name: string): number =>
    parseInt(createHash('sha1').update(name).digest('hex').slice(0, 7), 16)

  const repository = (fullName: string, fork: boolean): Repository => {
    const [ownerLogin = '', name = ''] = fullName.split('/')
    const api = `${base}/repos/${fullName}`
    const html = `${web}/${fullName}`
    const at = now()
    return {
      id: idOf(fullName),
      node_id: `R_kgDO${idOf(fullName)}`,
      name,
      full_name: fullName,
      owner: user(ownerLogin, idOf(ownerLogin)),
      private: false,
      html_url: html,
      description: null,
      fork,
      url: api,
      archive_url: `${api}/{archive_format}{/ref}`,
      assignees_url: `${api}/assignees{/user}`,
      blobs_url: `${api}/git/blobs{/sha}`,
      branches_url: `${api}/branches{/branch}`,
      collaborators_url: `${api}/collaborators{/collaborator}`,
      comments_url: `${api}/comments{/number}`,
      commits_url: `${api}/commits{/sha}`,
      compare_url: `${api}/compare/{base}...{head}`,
      contents_url: `${api}/contents/{+path}`,
      contributors_url: `${api}/contributors`,
      deployments_url: `${api}/deployments`,
      downloads_url: `${api}/downloads`,
      events_url: `${api}/events`,
      forks_url: `${api}/forks`,
      git_commits_url: `${api}/git/commits{/sha}`,
      git_refs_url: `${api}/git/refs{/sha}`,
      git_tags_url: `${api}/git/tags{/sha}`,
      git_url: `git://github.com/${fullName}.git`,
      issue_comment_url: `${api}/issues/comments{/number}`,
      issue_events_url: `${api}/issues/events{/number}`,
      issues_url: `${api}/issues{/number}`,
      keys_url: `${api}/keys{/key_id}`,
      labels_url: `${api}/labels{/name}`,
      languages_url: `${api}/languages`,
      merges_url: `${api}/merges`,
      milestones_url: `${api}/milestones{/number}`,
      notifications_url: `${api}/notifications{?since,all,participating}`,
      pulls_url: `${api}/pulls{/number}`,
      releases_url: `${api}/releases{/id}`,
      ssh_url: `git@github.com:${fullName}.git`,
      stargazers_url: `${api}/stargazers`,
      statuses_url: `${api}/statuses/{sha}`,
      subscribers_url: `${api}/subscribers`,
      subscription_url: `${api}/subscription`,
      tags_url: `${api}/tags`,
      teams_url: `${api}/teams`,
      trees_url: `${api}/git/trees{/sha}`,
      clone_url: `${html}.git`,
      mirror_url: null,
      hooks_url: `${api}/hooks`,
      svn_url: html,
      homepage: null,
      language: 'TypeScript',
      forks: 0,
      forks_count: 0,
      stargazers_count: 0,
      watchers: 0,
      watchers_count: 0,
      size: 0,
      default_branch: 'main',
      open_issues: 0,
      open_issues_count: 0,
      has_issues: !fork,
      has_projects: true,
      has_wiki: true,
      has_pages: false,
      has_downloads: true,
      archived: false,
      disabled: false,
      license: null,
      pushed_at: at,
      created_at: at,
      updated_at: at
    }
  }

  const addPullRequest = (fullName: string, spec: PullRequestSpec): PullRequest => {
    const repo = state.repo(fullName)
    const { number } = spec
    if (!Number.isSafeInteger(number) || number < 1)
      throw new Error(`addPullRequest: ${String(number)} is not a pull request number`)
    if (repo.issues.some(i => i.number === number) || repo.pulls.some(p => p.number === number))
      throw new Error(`addPullRequest: #${number} is already taken on ${fullName}`)
    const api = `${base}/repos/${fullName}`
    const url = `${api}/pulls/${number}`
    const html = `${web}/${fullName}/pull/${number}`
    const issueUrl = `${api}/issues/${number}`
    const author = user(spec.user, idOf(spec.user))
    const headRef = spec.headRef ?? 'feature'
    const baseRef = spec.baseRef ?? 'main'
    const headOwner = spec.headFullName?.split('/')[0] ?? spec.user
    const baseOwner = fullName.split('/')[0] ?? ''
    const sha = (ref: string): string => createHash('sha1').update(`${ref}#${number}`).digest('hex')
    const title = spec.title ?? `Pull request #${number}`
    const body = spec.body ?? null
    const at = now()
    const pull: PullRequest = {
      id: newId(),
      node_id: `PR_kwDO${nextId}`,
      number,
      url,
      html_url: html,
      diff_url: `${html}.diff`,
      patch_url: `${html}.patch`,
      issue_url: issueUrl,
      commits_url: `${url}/commits`,
      review_comments_url: `${url}/comments`,
      review_comment_url: `${api}/pulls/comments{/number}`,
      comments_url: `${issueUrl}/comments`,
      statuses_url: `${api}/statuses/${sha(headRef)}`,
      state: 'open',
      locked: false,
      title,
      user: author,
      body,
      labels: [],
      milestone: null,
      active_lock_reason: null,
      created_at: at,
      updated_at: at,
      closed_at: null,
      merged_at: null,
      merge_commit_sha: null,
      assignee: null,
      assignees: [],
      requested_reviewers: [],
      requested_teams: [],
      head: {
        label: `${headOwner}:${headRef}`,
        ref: headRef,
        sha: sha(headRef),
        user: user(headOwner, idOf(headOwner)),
        repo: spec.headFullName === null ? null : repository(spec.headFullName, spec.fork)
      },
      base: {
        label: `${baseOwner}:${baseRef}`,
        ref: baseRef,
        sha: sha(baseRef),
        user: user(baseOwner, idOf(baseOwner)),
        repo: repository(fullName, false)
      },
      _links: {
        self: { href: url },
        html: { href: html },
        issue: { href: issueUrl },
        comments: { href: `${issueUrl}/comments` },
        review_comments: { href: `${url}/comments` },
        review_comment: { href: `${api}/pulls/comments{/number}` },
        commits: { href: `${url}/commits` },
        statuses: { href: `${api}/statuses/${sha(headRef)}` }
      },
      author_association: spec.fork || spec.headFullName !== fullName ? 'CONTRIBUTOR' : 'MEMBER',
      auto_merge: null,
      draft: false,
      merged: false,
      mergeable: true,
      rebaseable: true,
      mergeable_state: 'clean',
      merged_by: null,
      comments: 0,
      review_comments: 0,
      maintainer_can_modify: false,
      commits: 1,
      additions: 1,
      deletions: 0,
      changed_files: 1
    }
    repo.pulls.push(pull)
    const issue = newIssue(fullName, number, { title, body, labels: [], user: author, html_url: html })
    issue.author_association = pull.author_association
    issue.pull_request = {
      url,
      html_url: html,
      diff_url: pull.diff_url,
      patch_url: pull.patch_url,
      merged_at: null
    }
    repo.issues.push(issue)
    repo.issues.sort((a, b) => a.number - b.number)
    return pull
  }

  const deploymentOr404 = (ctx: Context): Deployment => {
    const deployment = ctx.repo.deployments.find(d => d.id === Number(ctx.params.deployment_id))
    if (!deployment) throw new HttpError(404, 'Not Found')
    return deployment
  }

  /** GitHub's pagination: per_page (max 100), page, and a Link header with rel="next"/"last". */
  const page = <T>(items: T[], ctx: Context, path: string): Reply => {
    const perPage = Math.min(Math.max(Number(ctx.query.get('per_page') ?? 30), 1), 100)
    const current = Math.max(Number(ctx.query.get('page') ?? 1), 1)
    const last = Math.max(Math.ceil(items.length / perPage), 1)
    const link = (n: number): string => {
      const q = new URLSearchParams(ctx.query)
      q.set('page', String(n))
      q.set('per_page', String(perPage))
      return `<${base}${path}?${q.toString()}>`
    }
    const links: string[] = []
    if (current < last) links.push(`${link(current + 1)}; rel="next"`, `${link(last)}; rel="last"`)
    if (current > 1) links.push(`${link(1)}; rel="first"`, `${link(current - 1)}; rel="prev"`)
    return {
      status: 200,
      body: items.slice((current - 1) * perPage, current * perPage),
      headers: links.length ? { link: links.join(', ') } : {}
    }
  }

  const strip = <T extends object, K extends keyof T>(value: T, key: K): Omit<T, K> => {
    const copy = { ...value }
    delete copy[key]
    return copy
  }

  const handlers: Record<string, Handler> = {
    'issues/create': ctx => {
      const number = nextNumber(ctx.repo)
      const issue = newIssue(ctx.fullName, number, {
        title: String(ctx.body.title),
        body: typeof ctx.body.body === 'string' ? ctx.body.body : null,
        labels: labelsFrom(ctx, ctx.body.labels),
        user: actor,
        html_url: `${web}/${ctx.fullName}/issues/${number}`
      })
      ctx.repo.issues.push(issue)
      return { status: 201, body: issue, headers: { location: issue.url } }
    },
    'issues/get': ctx => ({ status: 200, body: issueOr404(ctx) }),
    'issues/update': ctx => {
      const issue = issueOr404(ctx)
      const { title, body, state, labels } = ctx.body
      if (typeof title === 'string' || typeof title === 'number') issue.title = String(title)
      if (typeof body === 'string' || body === null) issue.body = body
      if (state === 'open' || state === 'closed') {
        issue.state = state
        issue.closed_at = state === 'closed' ? now() : null
      }
      if (Array.isArray(labels)) issue.labels = labelsFrom(ctx, labels)
      issue.updated_at = now()
      return { status: 200, body: issue }
    },
    'issues/list-for-repo': (ctx, path) => {
      const state = ctx.query.get('state') ?? 'open'
      const wanted = (ctx.query.get('labels') ?? '')
        .split(',')
        .map(s => s.trim().toLowerCase())
        .filter(Boolean)
      const matches = ctx.repo.issues
        .filter(i => state === 'all' || i.state === state)
        .filter(i => wanted.every(w => i.labels.some(l => l.name.toLowerCase() === w)))
      const ascending = ctx.query.get('direction') === 'asc'
      matches.sort((a, b) => (ascending ? a.number - b.number : b.number - a.number))
      return page(matches, ctx, path)
    },
    'issues/create-comment': ctx => {
      const issue = issueOr404(ctx)
      const id = newId()
      const at = now()
      const comment: IssueComment = {
        id,
        node_id: `IC_kwDO${id}`,
        url: `${base}/repos/${ctx.fullName}/issues/comments/${id}`,
        html_url: `${issue.html_url}#issuecomment-${id}`,
        issue_url: issue.url,
        body: String(ctx.body.body),
        user: actor,
        created_at: at,
        updated_at: at,
        author_association: 'NONE'
      }
      ctx.repo.comments.push(comment)
      issue.comments += 1
      issue.updated_at = at
      return { status: 201, body: comment, headers: { location: comment.url } }
    },
    'issues/list-comments': (ctx, path) => {
      const issue = issueOr404(ctx)
      return page(
        ctx.repo.comments.filter(c => c.issue_url === issue.url),
        ctx,
        path
      )
    },
    'issues/list-labels-for-repo': (ctx, path) => page(ctx.repo.labels, ctx, path),
    'issues/get-label': ctx => {
      const found = findLabel(ctx.repo, ctx.params.name ?? '')
      if (!found) throw new HttpError(404, 'Not Found')
      return { status: 200, body: found }
    },
    'issues/create-label': ctx => {
      const name = String(ctx.body.name)
      if (findLabel(ctx.repo, name)) throw new HttpError(422, 'Validation Failed: already_exists')
      const color = typeof ctx.body.color === 'string' ? ctx.body.color : 'ededed'
      if (!/^[0-9a-fA-F]{6}$/.test(color)) throw new HttpError(422, 'Validation Failed: color is invalid')
      const description = typeof ctx.body.description === 'string' ? ctx.body.description : null
      if (description !== null && description.length > 100)
        throw new HttpError(422, 'Validation Failed: description is too long (maximum is 100 characters)')
      const created = label(ctx.fullName, name, color.toLowerCase(), description)
      ctx.repo.labels.push(created)
      return { status: 201, body: created }
    },
    'reactions/create-for-issue-comment': ctx => {
      const commentId = Number(ctx.params.comment_id)
      if (!ctx.repo.comments.some(c => c.id === commentId)) throw new HttpError(404, 'Not Found')
      const content = String(ctx.body.content)
      const existing = ctx.repo.reactions.find(
        r => r.comment_id === commentId && r.content === content && r.user.login === actor.login
      )
      if (existing) return { status: 200, body: strip(existing, 'comment_id') }
      const id = newId()
      const reaction: Reaction = {
        id,
        node_id: `REA_${id}`,
        user: actor,
        content,
        created_at: now(),
        comment_id: commentId
      }
      ctx.repo.reactions.push(reaction)
      return { status: 201, body: strip(reaction, 'comment_id') }
    },
    'repos/get-collaborator-permission-level': ctx => {
      const login = ctx.params.username ?? ''
      const roleName = state.roles.get(login)
      if (roleName === undefined) throw new HttpError(404, `${login} is not a user`)
      const permission = LEGACY_PERMISSION[roleName] ?? 'read'
      return {
        status: 200,
        body: {
          permission,
          role_name: roleName,
          user: {
            ...user(login, 583231),
            permissions: {
              admin: permission === 'admin',
              maintain: roleName === 'maintain' || permission === 'admin',
              push: permission !== 'read',
              triage: true,
              pull: true
            },
            role_name: roleName
          }
        }
      }
    },
    'repos/create-deployment': ctx => {
      const id = newId()
      const at = now()
      const ref = String(ctx.body.ref)
      const environment = typeof ctx.body.environment === 'string' ? ctx.body.environment : 'production'
      const url = `${base}/repos/${ctx.fullName}/deployments/${id}`
      const payload = ctx.body.payload
      const deployment: Deployment = {
        id,
        node_id: `DE_kwDO${id}`,
        url,
        // A ref that is a commit id is that commit; a branch or tag resolves to a commit of its own here.
        sha: /^[0-9a-f]{40}$/.test(ref) ? ref : createHash('sha1').update(ref).digest('hex'),
        ref,
        task: typeof ctx.body.task === 'string' ? ctx.body.task : 'deploy',
        payload:
          typeof payload === 'string' || (payload && typeof payload === 'object')
            ? (payload as Record<string, unknown> | string)
            : {},
        environment,
        original_environment: environment,
        description: typeof ctx.body.description === 'string' ? ctx.body.description : null,
        creator: actor,
        created_at: at,
        updated_at: at,
        statuses_url: `${url}/statuses`,
        repository_url: `${base}/repos/${ctx.fullName}`,
        transient_environment: ctx.body.transient_environment === true,
        production_environment:
          typeof ctx.body.production_environment === 'boolean'
            ? ctx.body.production_environment
            : environment === 'production'
      }
      ctx.repo.deployments.push(deployment)
      return { status: 201, body: deployment }
    },
    'repos/list-deployments': (ctx, path) => {
      const filters = ['sha', 'ref', 'task', 'environment'] as const
      const matches = ctx.repo.deployments
        .filter(d => filters.every(f => !ctx.query.has(f) || ctx.query.get(f) === d[f]))
        .sort((a, b) => b.id - a.id)
      return page(matches, ctx, path)
    },
    'repos/create-deployment-status': ctx => {
      const deployment = deploymentOr404(ctx)
      const id = newId()
      const at = now()
      const str = (key: string, fallback: string): string =>
        typeof ctx.body[key] === 'string' ? ctx.body[key] : fallback
      const logUrl = str('log_url', str('target_url', ''))
      const status: DeploymentStatus = {
        id,
        node_id: `DES_kwDO${id}`,
        url: `${deployment.url}/statuses/${id}`,
        state: String(ctx.body.state),
        creator: actor,
        description: str('description', '').slice(0, 140),
        environment: str('environment', deployment.environment),
        target_url: logUrl,
        log_url: logUrl,
        environment_url: str('environment_url', ''),
        deployment_url: deployment.url,
        repository_url: deployment.repository_url,
        created_at: at,
        updated_at: at,
        deployment_id: deployment.id
      }
      ctx.repo.deploymentStatuses.push(status)
      deployment.updated_at = at
      return { status: 201, body: strip(status, 'deployment_id'), headers: { location: status.url } }
    },
    'repos/list-deployment-statuses': (ctx, path) => {
      const deployment = deploymentOr404(ctx)
      const statuses = ctx.repo.deploymentStatuses
        .filter(s => s.deployment_id === deployment.id)
        .sort((a, b) => b.id - a.id)
        .map(s => strip(s, 'deployment_id'))
      return page(statuses, ctx, path)
    },
    'repos/get-environment': ctx => {
      const name = ctx.params.environment_name ?? ''
      const env = ctx.repo.environments.find(e => e.name.toLowerCase() === name.toLowerCase())
      if (!env) throw new HttpError(404, 'Not Found')
      const id = 56780000 + ctx.repo.environments.indexOf(env)
      const at = now()
      const rules = env.reviewers.length
        ? [
            {
              id: id + 1,
              node_id: `GA_${id + 1}`,
              type: 'required_reviewers',
              prevent_self_review: env.preventSelfReview === true,
              reviewers: env.reviewers.map((login, i) => ({
                type: 'User',
                reviewer: user(login, 583300 + i)
              }))
            }
          ]
        : []
      return {
        status: 200,
        body: {
          id,
          node_id: `EN_${id}`,
          name: env.name,
          url: `${base}/repos/${ctx.fullName}/environments/${encodeURIComponent(env.name)}`,
          html_url: `${web}/${ctx.fullName}/deployments/activity_log?environments_filter=${encodeURIComponent(env.name)}`,
          created_at: at,
          updated_at: at,
          protection_rules: rules,
          deployment_branch_policy: null
        }
      }
    },
    'pulls/get': ctx => {
      const pull = ctx.repo.pulls.find(p => p.number === Number(ctx.params.pull_number))
      if (!pull) throw new HttpError(404, 'Not Found')
      // Conversation comments live on the pull request's issue.
      const issue = ctx.repo.issues.find(i => i.number === pull.number)
      return { status: 200, body: issue ? { ...pull, comments: issue.comments } : pull }
    }
  }

  return { handlers, addPullRequest }
}

export async function start(options: ServerOptions = {}): Promise<GitHubApiServer> {
  loadContract()
  // Listen first: every URL in a response is built on the base URL.
  const server = createServer((req, res) => serve(req, res))
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const violations: Violation[] = []
  const requests: RecordedRequest[] = []
  const repos = new Map<string, RepoState>()
  const state: ServerState = {
    repos,
    roles: new Map(Object.entries(options.roles ?? {})),
    repo(fullName) {
      let r = repos.get(fullName)
      if (!r) {
        r = {
          environments: [],
          labels: [],
          issues: [],
          pulls: [],
          comments: [],
          reactions: [],
          deployments: [],
          deploymentStatuses: []
        }
        repos.set(fullName, r)
      }
      return r
    }
  }
  const { handlers, addPullRequest } = fakeGitHub(state, base, options.actor ?? 'github-actions[bot]')

  const fail = (status: number, message: string): Reply => ({
    status,
    body: { message, documentation_url: 'https://docs.github.com/rest', status: String(status) }
  })

  const handle = (call: Call): Reply & { operationId?: string; parsed?: unknown } => {
    const checked = checkRequest(call)
    const where = { method: call.method, path: call.path, operationId: checked.operationId }
    if (!checked.ok) {
      violations.push({ ...where, problem: checked.problem })
      return {
        ...fail(
          checked.status,
          checked.status === 404 ? 'Not Found' : `Invalid request.\n\n${checked.problem}`
        ),
        operationId: checked.operationId
      }
    }
    const { operation, params, body } = checked
    const handler = handlers[operation.operationId]
    if (!handler) {
      const problem = `${operation.operationId} is documented but this fake does not implement it`
      violations.push({ ...where, problem })
      return { ...fail(501, problem), operationId: operation.operationId }
    }
    const ctx: Context = {
      operationId: operation.operationId,
      params,
      query: call.query,
      body: body && typeof body === 'object' ? (body as Record<string, unknown>) : {},
      repo: state.repo(`${params.owner ?? ''}/${params.repo ?? ''}`),
      fullName: `${params.owner ?? ''}/${params.repo ?? ''}`
    }
    let reply: Reply
    try {
      reply = handler(ctx, call.path)
    } catch (e) {
      if (!(e instanceof HttpError)) throw e
      return { ...fail(e.status, e.message), operationId: operation.operationId }
    }

    const wrong = checkResponse(operation, reply)
    if (wrong) violations.push({ ...where, problem: wrong })
    return { ...reply, operationId: operation.operationId, parsed: body }
  }

  const serve = (req: IncomingMessage, res: ServerResponse): void => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://127.0.0.1')
      const method = req.method ?? 'GET'
      const rawBody = Buffer.concat(chunks).toString('utf8')
      let reply: ReturnType<typeof handle>
      try {
        reply = handle({
          method,
          path: url.pathname,
          query: url.searchParams,
          rawBody,
          contentType: req.headers['content-type'] ?? ''
        })
      } catch (e) {
        violations.push({ method, path: url.pathname, problem: `the fake crashed: ${String(e)}` })
        reply = { status: 500, body: { message: 'fake crashed' } }
      }
      requests.push({
        method,
        path: url.pathname,
        operationId: reply.operationId,
        query: Object.fromEntries(url.searchParams),
        body: reply.parsed,
        authorization: req.headers.authorization,
        status: reply.status
      })
      const payload = reply.body === undefined ? '' : JSON.stringify(reply.body)
      res.writeHead(reply.status, {
        'content-type': 'application/json; charset=utf-8',
        'x-github-media-type': 'github.v3; format=json',
        ...reply.headers
      })
      res.end(payload)
    })
  }

  return {
    url: base,
    state,
    violations,
    requests,
    addPullRequest,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections()
        server.close(e => (e ? reject(e) : resolve()))
      })
  }
}
