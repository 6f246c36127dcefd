/**
 * The GitHub driver: the few REST calls backout makes (incident issues, ChatOps replies, permission checks,
 * deployments), behind a narrow structural interface so the engine and the actions can be given a fake.
 *
 * The token is the caller's to mask (Logger.mask) before anything runs; this driver never puts it in an
 * error message.
 */
import type { Octokit } from '@octokit/rest'
import { fingerprintMarker } from '../core/incident'
import { OperationError } from '../core/errors'
import { maskSecrets, type Logger } from '../core/logger'

export interface IssueRef {
  number: number
  html_url: string
}

export interface CommentRef {
  id: number
  html_url: string
}

export type ReactionContent = '+1' | '-1' | 'laugh' | 'confused' | 'heart' | 'hooray' | 'rocket' | 'eyes'

export type DeploymentState =
  'error' | 'failure' | 'inactive' | 'in_progress' | 'queued' | 'pending' | 'success'

export interface DeploymentSummary {
  id: number
  ref: string
  sha: string
  environment: string
  description: string | null
  created_at: string
  payload: unknown
}

/** An environment's protection as GET /repos/{owner}/{repo}/environments/{name} reports it. */
export interface EnvironmentProtection {
  /** false: GitHub would create it on first use, with no protection at all. */
  exists: boolean
  /** How many users or teams may approve a job that uses it (0: no required reviewers rule). */
  reviewers: number
  /** Whether the user who started the run may approve it. */
  preventSelfReview: boolean
}

/** Only the calls backout makes. */
export interface GitHubApi {
  /** Creates the labels that do not exist yet; returns the names it created. */
  ensureLabels(names: readonly string[]): Promise<string[]>
  /** The open issue labelled `incident` whose body carries this fingerprint's hidden marker. */
  findOpenIncident(fingerprint: string): Promise<IssueRef | undefined>
  createIssue(title: string, body: string, labels: readonly string[]): Promise<IssueRef>
  commentOnIssue(issueNumber: number, body: string): Promise<CommentRef>
  addReaction(commentId: number, content: ReactionContent): Promise<void>
  /** The user's role on the repository (admin, maintain, write, triage, read, a custom role), or 'none'. */
  getPermission(username: string): Promise<string>
  createDeployment(
    ref: string,
    environment: string,
    description: string,
    payload: Record<string, unknown>
  ): Promise<{ id: number }>
  setDeploymentStatus(
    id: number,
    state: DeploymentState,
    description: string,
    environmentUrl?: string
  ): Promise<void>
  /** The environment's most recent deployments (up to 100), newest first. */
  listDeployments(environment: string): Promise<DeploymentSummary[]>
  /**
   * Whether the pull request comes from another repository: its head repository is a fork, is not this
   * repository, or is gone (a deleted fork). Such code must not run with this repository's secrets.
   */
  isForkPullRequest(pullNumber: number): Promise<boolean>
  /** The environment's required reviewers; exists: false when it was never created. Needs actions: read. */
  getEnvironmentProtection(name: string): Promise<EnvironmentProtection>
}

export interface GitHubApiOptions {
  token: string
  /** https://api.github.com, or GITHUB_API_URL (GHES, a test server). */
  baseUrl: string
  owner: string
  repo: string
  /** Receives octokit's own request log at debug level. */
  logger?: Logger
}

export const INCIDENT_LABEL = 'incident'

/** Colours and descriptions for the labels backout files incidents with; other names get a grey label. */
const LABEL_STYLE: Record<string, { color: string; description: string }> = {
  incident: { color: 'b60205', description: 'Production incident filed by backout' },
  production: { color: 'd93f0b', description: 'Affects the production environment' },
  rollback: { color: 'fbca04', description: 'A rollback was run' }
}

/** GitHub cuts deployment status descriptions at 140 characters. */
const STATUS_DESCRIPTION_MAX = 140

/** Which workflow permission each call needs, for the hint on a 401/403. */
const NEEDS = {
  issues: 'issues: write',
  deployments: 'deployments: write',
  metadata: 'metadata: read',
  pulls: 'pull-requests: read',
  actions: 'actions: read'
}

/** The part of a pull request's head that tells where it comes from. */
interface PullRequestHead {
  /** null when the fork the pull request was opened from has been deleted (GitHub's types omit this). */
  repo: { full_name: string; fork: boolean } | null
}

function statusOf(error: unknown): number | undefined {
  const status = error && typeof error === 'object' ? (error as { status?: unknown }).status : undefined
  return typeof status === 'number' ? status : undefined
}

/**
 * @octokit/rest is loaded on the first call: a run that makes none (a comment that is not a command, an input
 * refused) never loads it. The build (scripts/build.mjs) bundles it apart, into dist/<name>/octokit/index.js,
 * and maps this require to that file.
 */
function loadOctokit(): typeof Octokit {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('@octokit/rest') as { Octokit: typeof Octokit }).Octokit
}

export function createGitHubApi(options: GitHubApiOptions): GitHubApi {
  const { token, owner, repo, logger } = options
  const quiet = (message: string): void => logger?.debug(maskSecrets(message, [token]))
  let client: Octokit | undefined
  const octokit = (): Octokit =>
    (client ??= new (loadOctokit())({
      auth: token,
      baseUrl: options.baseUrl.replace(/\/+$/, ''),
      userAgent: 'backout',
      log: { debug: quiet, info: quiet, warn: quiet, error: quiet }
    }))
  const where = { owner, repo }

  /**
   * Runs one call; a failure says which call, on which repository, what GitHub answered, and what to do.
   * `missing` names what a 404 may mean beyond the repository itself (e.g. "pull request #7").
   */
  async function call<T>(what: string, needs: string, fn: () => Promise<T>, missing?: string): Promise<T> {
    try {
      return await fn()
    } catch (error) {
      const status = statusOf(error)
      const answer = error instanceof Error ? error.message : String(error)
      const exists = missing ? `${missing} exists on ${owner}/${repo}` : `${owner}/${repo} exists`
      const hint =
        status === 401 || status === 403
          ? ` — check the token and give the workflow \`permissions: ${needs}\``
          : status === 404
            ? ` — check that ${exists} and the token can see it`
            : ''
      const message = `GitHub API: ${what} on ${owner}/${repo} failed${status ? ` (HTTP ${status})` : ''}: ${answer}${hint}`
      throw new OperationError(maskSecrets(message, [token]), 'github_api_error')
    }
  }

  return {
    async ensureLabels(names) {
      const created: string[] = []
      for (const name of new Set(names)) {
        const exists = await call(`get label ${JSON.stringify(name)}`, NEEDS.issues, async () => {
          try {
            await octokit().rest.issues.getLabel({ ...where, name })
            return true
          } catch (error) {
            if (statusOf(error) === 404) return false
            throw error
          }
        })
        if (exists) continue
        const style = LABEL_STYLE[name] ?? { color: 'ededed', description: 'Filed by backout' }
        await call(`create label ${JSON.stringify(name)}`, NEEDS.issues, async () => {
          try {
            await octokit().rest.issues.createLabel({ ...where, name, ...style })
            created.push(name)
          } catch (error) {
            // Another run created it between our check and our create: the label exists, which is the goal.
            if (statusOf(error) !== 422) throw error
          }
        })
      }
      return created
    },

    async findOpenIncident(fingerprint) {
      const marker = fingerprintMarker(fingerprint)
      return call('list open incident issues', NEEDS.issues, async () => {
        const gh = octokit()
        const pages = gh.paginate.iterator(gh.rest.issues.listForRepo, {
          ...where,
          state: 'open',
          labels: INCIDENT_LABEL,
          per_page: 100
        })
        for await (const { data } of pages) {
          const found = data.find(issue => !issue.pull_request && (issue.body ?? '').includes(marker))
          if (found) return { number: found.number, html_url: found.html_url }
        }
        return undefined
      })
    },

    async createIssue(title, body, labels) {
      const { data } = await call('create issue', NEEDS.issues, () =>
        octokit().rest.issues.create({ ...where, title, body, labels: [...labels] })
      )
      return { number: data.number, html_url: data.html_url }
    },

    async commentOnIssue(issueNumber, body) {
      const { data } = await call(`comment on issue #${issueNumber}`, NEEDS.issues, () =>
        octokit().rest.issues.createComment({ ...where, issue_number: issueNumber, body })
      )
      return { id: data.id, html_url: data.html_url }
    },

    async addReaction(commentId, content) {
      await call(`add reaction ${content} to comment ${commentId}`, NEEDS.issues, () =>
        octokit().rest.reactions.createForIssueComment({ ...where, comment_id: commentId, content })
      )
    },

    async getPermission(username) {
      return call(`get permission of ${JSON.stringify(username)}`, NEEDS.metadata, async () => {
        try {
          const { data } = await octokit().rest.repos.getCollaboratorPermissionLevel({ ...where, username })
          return data.role_name
        } catch (error) {
          if (statusOf(error) === 404) return 'none'
          throw error
        }
      })
    },

    async createDeployment(ref, environment, description, payload) {
      const { data } = await call(`create deployment of ${ref} to ${environment}`, NEEDS.deployments, () =>
        octokit().rest.repos.createDeployment({
          ...where,
          ref,
          environment,
          description,
          payload,
          // A rollback deploys an older ref on purpose: no merging of the default branch into it, and no
          // waiting on commit statuses that were green when that ref first shipped.
          auto_merge: false,
          required_contexts: []
        })
      )
      if (!('id' in data))
        throw new OperationError(
          `GitHub API: create deployment of ${ref} to ${environment} on ${owner}/${repo} returned no deployment: ${data.message ?? 'no message'}`,
          'github_api_error'
        )
      return { id: data.id }
    },

    async setDeploymentStatus(id, state, description, environmentUrl) {
      await call(`set deployment ${id} status to ${state}`, NEEDS.deployments, () =>
        octokit().rest.repos.createDeploymentStatus({
          ...where,
          deployment_id: id,
          state,
          description: description.slice(0, STATUS_DESCRIPTION_MAX),
          ...(environmentUrl ? { environment_url: environmentUrl } : {})
        })
      )
    },

    async listDeployments(environment) {
      const { data } = await call(`list deployments to ${environment}`, NEEDS.deployments, () =>
        octokit().rest.repos.listDeployments({ ...where, environment, per_page: 100 })
      )
      return data.map(d => ({
        id: d.id,
        ref: d.ref,
        sha: d.sha,
        environment: d.environment,
        description: d.description,
        created_at: d.created_at,
        payload: d.payload
      }))
    },

    async getEnvironmentProtection(name) {
      return call(`get environment ${JSON.stringify(name)}`, NEEDS.actions, async () => {
        try {
          const { data } = await octokit().rest.repos.getEnvironment({ ...where, environment_name: name })
          const rule = (data.protection_rules ?? []).find(r => r.type === 'required_reviewers') as
            { reviewers?: unknown[]; prevent_self_review?: boolean } | undefined
          return {
            exists: true,
            reviewers: rule?.reviewers?.length ?? 0,
            preventSelfReview: rule?.prevent_self_review === true
          }
        } catch (error) {
          if (statusOf(error) === 404) return { exists: false, reviewers: 0, preventSelfReview: false }
          throw error
        }
      })
    },

    async isForkPullRequest(pullNumber) {
      const { data } = await call(
        `get pull request #${pullNumber}`,
        NEEDS.pulls,
        () => octokit().rest.pulls.get({ ...where, pull_number: pullNumber }),
        `pull request #${pullNumber}`
      )
      const head: PullRequestHead = data.head
      if (!head.repo) return true
      return head.repo.fork || head.repo.full_name.toLowerCase() !== data.base.repo.full_name.toLowerCase()
    }
  }
}
