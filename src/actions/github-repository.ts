import { UserError } from '../core/errors'
import { createGitHubApi, type GitHubApi, type GitHubApiOptions } from '../drivers/github'

/** The repository the action runs for, as the runner describes it, and a client for it. */
export interface GitHubRepository {
  api: GitHubApi
  owner: string
  repo: string
  /** This workflow run's page, when the runner names it. */
  runUrl: string | undefined
}

/** The one place the actions read GITHUB_REPOSITORY / GITHUB_API_URL / GITHUB_RUN_ID and make their API client. */
export function gitHubRepository(token: string, logger: GitHubApiOptions['logger']): GitHubRepository {
  const [owner, repo] = (process.env.GITHUB_REPOSITORY ?? '').split('/')
  if (!owner || !repo)
    throw new UserError(
      'GITHUB_REPOSITORY is not set (owner/repo) — run this action on GitHub Actions',
      'bad_input'
    )
  const api = createGitHubApi({
    token,
    baseUrl: process.env.GITHUB_API_URL ?? 'https://api.github.com',
    owner,
    repo,
    logger
  })
  const server = process.env.GITHUB_SERVER_URL ?? 'https://github.com'
  const runUrl = process.env.GITHUB_RUN_ID
    ? `${server}/${owner}/${repo}/actions/runs/${process.env.GITHUB_RUN_ID}`
    : undefined
  return { api, owner, repo, runUrl }
}
