import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { parse as parseYaml } from 'yaml'
import { UserError } from '../core/errors'
import { approvalEnvironments, resolveRollbackTarget } from '../core/rollback-target'
import type { ActionContext, ActionOutcome } from './action-runner'
import { gitHubRepository } from './github-repository'

/**
 * preflight, the first job of rollback.yml (on a GitHub-hosted runner: it needs no host): which runner and
 * which backout.yml the environment means, and whether every approval environment the rollback may enter
 * exists with required reviewers. GitHub creates an environment that a job names but nobody created — with
 * no reviewers — so a missing one would let a destructive level run unapproved: fail closed, unless the
 * caller sets allow-unprotected: true.
 */
export async function runPreflight(ctx: ActionContext<'preflight'>): Promise<ActionOutcome<'preflight'>> {
  const environment = ctx.input('environment')
  const file = ctx.input('environments-file') || '.github/backout-environments.yml'
  const full = path.resolve(process.env.GITHUB_WORKSPACE ?? '.', file)
  let mapping: unknown
  if (existsSync(full)) {
    try {
      mapping = parseYaml(readFileSync(full, 'utf8')) as unknown
    } catch (e) {
      throw new UserError(`${file} is not valid YAML: ${(e as Error).message.split('\n')[0]}`, 'bad_config')
    }
  }
  const target = resolveRollbackTarget(
    environment,
    mapping,
    { runnerLabels: ctx.input('runner-labels'), config: ctx.input('config') },
    file
  )
  const envs = approvalEnvironments(ctx.input('level') || '1', ctx.boolean('escalate'))
  const allowUnprotected = ctx.boolean('allow-unprotected')
  const token = ctx.input('token')
  if (!token) throw new UserError('input token: empty — pass github.token (needs actions: read)', 'bad_input')
  ctx.log.mask(token)
  const { api } = gitHubRepository(token, ctx.log)
  const problems: string[] = []
  const rows: string[] = []
  for (const name of envs) {
    const p = await api.getEnvironmentProtection(name)
    const problem = !p.exists
      ? `${name} does not exist (GitHub would create it with no reviewers)`
      : p.reviewers === 0
        ? `${name} has no required reviewers`
        : undefined
    if (problem) problems.push(problem)
    rows.push(`| ${name} | ${p.exists ? 'yes' : 'no'} | ${p.reviewers} | ${problem ? '❌' : '✅'} |`)
  }
  const summary = [
    `## backout preflight: ${environment}`,
    '',
    `Runner labels \`${JSON.stringify(target.runnerLabels)}\`, config \`${target.config}\`.`,
    '',
    '| Approval environment | Exists | Reviewers | |',
    '|---|---|---|---|',
    ...rows
  ].join('\n')
  const outputs = { runner_labels: JSON.stringify(target.runnerLabels), config: target.config }
  if (problems.length && !allowUnprotected)
    return {
      decision: 'refused',
      reasonCode: 'unprotected_environment',
      outputs,
      summary,
      failure: new UserError(
        `refusing to roll back without approvals: ${problems.join('; ')} — create each in Settings → ` +
          'Environments with required reviewers (docs/security.md), or set allow-unprotected: true to run without',
        'unprotected_environment'
      )
    }
  for (const p of problems) ctx.log.warn(`allow-unprotected: ${p}`)
  return { decision: 'ready', reasonCode: problems.length ? 'unprotected_allowed' : 'ok', outputs, summary }
}
