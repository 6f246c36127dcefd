import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import {
  INCIDENT_LABELS,
  analysisSection,
  escalationComment,
  incidentBody,
  incidentFingerprint,
  incidentTitle,
  postMortemBody,
  riskyFiles,
  stakeholderNotification,
  topErrorLines
} from '../core/incident'
import type { RunRecord } from '../core/run-record'
import { runCommand } from '../drivers/exec'
import type { GitHubApi } from '../drivers/github'
import type { Service } from './service'

export interface IncidentRequest {
  record: RunRecord
  runUrl?: string
  /** The commit the rollback's deployment points at (GITHUB_SHA). */
  sha?: string
  /** The commit of the deployment that failed (the triggering run's head_sha): that one is marked failed. */
  failedSha?: string
  owner?: string
}

export interface IncidentResult {
  issueNumber: number
  issueUrl: string
  created: boolean
  notification: string
}

/** The last hour of the service's logs, as the runbook's step 5 reads them. */
function recentLogs(service: Service): string {
  const out: string[] = []
  for (const color of ['blue', 'green'] as const) {
    const file = service.config.targets[color].process?.logFile
    if (file && existsSync(file)) out.push(readFileSync(file, 'utf8').slice(-1_000_000))
  }
  return out.join('\n')
}

/**
 * The runbook's post-rollback steps 5 and 6, done from what backout kept: the most frequent error lines,
 * the config diff between the failed state (the safety backup) and the target, and the risky files among
 * the differences.
 */
export async function analyse(service: Service, record: RunRecord): Promise<string> {
  const ids = [
    record.safetyBackupId,
    record.backupId ?? service.store.list().find(b => b.manifest.kind === 'snapshot')?.id
  ]
  let configDiff = ''
  let changed: string[] = []
  const [failed, target] = ids.map(id => (id ? service.store.list().find(b => b.id === id) : undefined))
  if (failed && target) {
    const res = await runCommand([
      'diff',
      '-ru',
      path.join(target.dir, 'config'),
      path.join(failed.dir, 'config')
    ])
    configDiff = res.stdout.split(`${target.dir}/`).join('').split(`${failed.dir}/`).join('')
    changed = [
      ...new Set([...configDiff.matchAll(/^diff -ru (\S+)/gm)].map(m => m[1]!.replace(/^config\//, '/')))
    ]
  }
  return analysisSection({
    topErrors: topErrorLines(recentLogs(service), 10),
    configDiff,
    riskyFiles: riskyFiles(changed)
  })
}

/**
 * Files the incident: one issue per service and deployment, found again by label and hidden fingerprint,
 * so re-runs and escalations comment on the same issue. The post-mortem template follows as a comment.
 * The failed deployment is marked failed and inactive; the rollback gets a deployment of its own.
 */
export async function openIncident(
  service: Service,
  api: GitHubApi,
  req: IncidentRequest
): Promise<IncidentResult> {
  const { record } = req
  const { config } = service
  const fingerprint = incidentFingerprint(config.service, config.environment, record.from ?? 'unknown')
  await api.ensureLabels(INCIDENT_LABELS)
  const existing = await api.findOpenIncident(fingerprint)
  let issue = existing
  if (existing) await api.commentOnIssue(existing.number, escalationComment(record, { runUrl: req.runUrl }))
  else {
    const analysis = await analyse(service, record).catch(() => undefined)
    issue = await api.createIssue(
      incidentTitle(record.reason),
      incidentBody(record, { runUrl: req.runUrl, analysis, fingerprint }),
      INCIDENT_LABELS
    )
    await api.commentOnIssue(
      issue.number,
      postMortemBody({ record, owner: req.owner ?? 'the on-call engineer', incidentUrl: issue.html_url })
    )
  }
  if ((record.status === 'success' || record.status === 'failed') && !record.dryRun && req.sha)
    await recordDeployments(api, config.environment, record, req.sha, req.failedSha)
  return {
    issueNumber: issue!.number,
    issueUrl: issue!.html_url,
    created: !existing,
    notification: stakeholderNotification(record)
  }
}

/** The payload marker of a rollback deployment backout created: the run id. */
function backoutRun(payload: unknown): string | undefined {
  if (typeof payload !== 'object' || payload === null || !('backout' in payload)) return undefined
  return String((payload as { backout: { run?: unknown } }).backout.run)
}

/**
 * GitHub Deployments: the failed deployment gets failure then inactive, the rollback a deployment of its
 * own. A re-run for the same rollback changes nothing: its deployment already exists.
 */
async function recordDeployments(
  api: GitHubApi,
  environment: string,
  record: RunRecord,
  sha: string,
  failedSha?: string
): Promise<void> {
  const deployments = await api.listDeployments(environment)
  if (deployments.some(d => backoutRun(d.payload) === record.id)) return
  const releases = deployments.filter(d => backoutRun(d.payload) === undefined)
  // The deployment the triggering run created (by its commit), not merely the newest one.
  const failedDeployment = failedSha ? releases.find(d => d.sha === failedSha) : releases[0]
  // The restored release: the release deployment before the failed one; its commit is what now runs.
  const restored = failedDeployment ? releases.find(d => d.id < failedDeployment.id) : undefined
  if (failedDeployment) {
    await api.setDeploymentStatus(failedDeployment.id, 'failure', `rolled back by backout: ${record.reason}`)
    await api.setDeploymentStatus(failedDeployment.id, 'inactive', 'replaced by the rollback')
  }
  const deployment = await api.createDeployment(
    restored?.sha ?? sha,
    environment,
    `rollback to ${record.to ?? 'previous'}`,
    { backout: { level: record.level, from: record.from, to: record.to, run: record.id } }
  )
  await api.setDeploymentStatus(
    deployment.id,
    'in_progress',
    `Level ${record.level} rollback to ${record.to}`
  )
  await api.setDeploymentStatus(
    deployment.id,
    record.status === 'success' ? 'success' : 'failure',
    `Level ${record.level} rollback to ${record.to}: ${record.status}`
  )
}
