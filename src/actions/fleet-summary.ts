import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs'
import path from 'node:path'
import { UserError } from '../core/errors'
import { fleetOutcomes, fleetTable, parseFleetRow, type FleetRow } from '../core/fleet'
import { INCIDENT_LABELS } from '../core/incident'
import type { ActionContext, ActionOutcome } from './action-runner'
import { gitHubRepository } from './github-repository'

/** Every file under dir (download-artifact puts each host's artifact in a folder of its own). */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return []
  return readdirSync(dir).flatMap(name => {
    const full = path.join(dir, name)
    return statSync(full).isDirectory() ? filesUnder(full) : [full]
  })
}

/**
 * fleet-summary: after a fleet rollback, one table with a row per host (from each host's result file) in the
 * job summary, and ONE incident issue for the fleet listing every host's outcome.
 */
export async function runFleetSummary(
  ctx: ActionContext<'fleet-summary'>
): Promise<ActionOutcome<'fleet-summary'>> {
  let environments: unknown
  try {
    environments = JSON.parse(ctx.input('environments') || '[]')
  } catch {
    environments = undefined
  }
  if (!Array.isArray(environments) || !environments.every(e => typeof e === 'string'))
    throw new UserError('input environments: expected a JSON list of environment names', 'bad_input')
  const rows = filesUnder(path.resolve(process.env.GITHUB_WORKSPACE ?? '.', ctx.input('dir') || 'fleet'))
    .filter(f => statSync(f).size < 64 * 1024)
    .map(f => parseFleetRow(readFileSync(f, 'utf8')))
    .filter((r): r is FleetRow => r !== undefined)
  const outcomes = fleetOutcomes(environments, rows)
  const table = fleetTable(outcomes)
  const rolledBack = outcomes.filter(o => o.decision === 'rolled_back').length
  const failed = outcomes.length - rolledBack - outcomes.filter(o => o.decision === 'planned').length
  const reason = ctx.input('reason') || 'fleet rollback'
  let issue: { number: number; html_url: string } | undefined
  if (!ctx.boolean('dry-run')) {
    const token = ctx.input('token')
    if (!token) throw new UserError('input token: empty — pass a token with issues: write', 'bad_input')
    ctx.log.mask(token)
    const { api, runUrl } = gitHubRepository(token, ctx.log)
    await api.ensureLabels(INCIDENT_LABELS)
    issue = await api.createIssue(
      `Fleet Rollback: ${reason}`.slice(0, 250),
      [
        `## Fleet rollback: ${outcomes.length} hosts`,
        '',
        table,
        ...(runUrl ? ['', `Run: ${runUrl}`] : [])
      ].join('\n'),
      INCIDENT_LABELS
    )
  }
  return {
    decision: failed ? 'partial' : 'complete',
    reasonCode: failed ? 'hosts_failed' : 'ok',
    outputs: {
      hosts: outcomes.length,
      rolled_back: rolledBack,
      failed,
      issue_number: issue?.number ?? '',
      issue_url: issue?.html_url ?? ''
    },
    summary: `## backout fleet: ${reason}\n\n${table}`
  }
}
