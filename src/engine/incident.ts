import { existsSync, readFileSync, readdirSync } from 'node:fs'
import path from 'node:path'
import {
  analysisSection,
  configChanges,
  escalationComment,
  incidentBody,
  incidentFingerprint,
  incidentLabels,
  incidentTitle,
  isSecretFile,
  nginxDowntime,
  postMortemBody,
  riskyFiles,
  stakeholderNotification,
  topErrorLines,
  type ConfigChange,
  type IncidentFacts
} from '../core/incident'
import type { RunRecord } from '../core/run-record'
import { runCommand } from '../drivers/exec'
import type { GitHubApi } from '../drivers/github'
import { nginxFacts } from './evidence'
import { lastAssessment, lastValidation } from './observations'
import { breachRecord } from './security-hold'
import type { Service } from './service'

export interface IncidentRequest {
  record: RunRecord
  runUrl?: string
  /** The commit the rollback's deployment points at (GITHUB_SHA). */
  sha?: string
  /** The commit of the deployment that failed (the triggering run's head_sha): that one is marked failed. */
  failedSha?: string
  owner?: string
  /** When the failed deployment run failed (the detection time), and its URL. */
  detectedAt?: string
  failedRunUrl?: string
  /** The ChatOps comment that triggered the rollback. */
  triggerUrl?: string
  /** Opt-in: the full config diff (stable → failed) beside the hashes; secret files are never in it. */
  fullDiff?: boolean
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

/** Every file under dir, by its path below dir. */
function filesUnder(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>()
  if (!existsSync(dir)) return out
  const walk = (d: string): void => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const full = path.join(d, e.name)
      if (e.isDirectory()) walk(full)
      else if (e.isFile()) out.set(`/${path.relative(dir, full)}`, readFileSync(full))
    }
  }
  walk(dir)
  return out
}

/**
 * The runbook's post-rollback steps 5 and 6, done from what backout kept: the most frequent ERROR-level lines,
 * what changed in the config files from the stable state (the rollback's target) to the failed one (the safety
 * backup) — names, sha256 and changed keys, never values — and the risky files among them. The full diff only on
 * request, and never of a secret file.
 */
export async function analyse(
  service: Service,
  record: RunRecord,
  options: { fullDiff?: boolean } = {}
): Promise<string> {
  const list = service.store.list()
  const failed = record.safetyBackupId ? list.find(b => b.id === record.safetyBackupId) : undefined
  const stableId = record.backupId ?? list.find(b => b.manifest.kind === 'snapshot')?.id
  const stable = stableId ? list.find(b => b.id === stableId) : undefined
  let changes: ConfigChange[] = []
  let configDiff = ''
  if (failed && stable) {
    const stableDir = path.join(stable.dir, 'config')
    const failedDir = path.join(failed.dir, 'config')
    changes = configChanges(filesUnder(stableDir), filesUnder(failedDir))
    if (options.fullDiff) {
      const shown = changes.filter(c => !isSecretFile(c.file))
      const diffs = await Promise.all(
        shown.map(c =>
          runCommand([
            'diff',
            '-u',
            '--label',
            `stable${c.file}`,
            '--label',
            `failed${c.file}`,
            c.oldSha256 ? path.join(stableDir, c.file) : '/dev/null',
            c.newSha256 ? path.join(failedDir, c.file) : '/dev/null'
          ]).then(r => r.stdout)
        )
      )
      configDiff = diffs.join('')
    }
  }
  return analysisSection({
    topErrors: topErrorLines(recentLogs(service), 10),
    configChanges: changes,
    configDiff,
    riskyFiles: riskyFiles(changes.map(c => c.file))
  })
}

/** Run records in state/runs, oldest first. */
function runRecords(service: Service): RunRecord[] {
  const dir = path.join(service.config.state.dir, 'runs')
  if (!existsSync(dir)) return []
  return readdirSync(dir)
    .filter(f => f.endsWith('.json'))
    .flatMap(f => {
      try {
        return [JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as RunRecord]
      } catch {
        return []
      }
    })
    .sort((a, b) => a.startedAt.localeCompare(b.startedAt))
}

/** The earlier levels of the escalation this record ends (each failed or refused, one level lower, just before). */
function escalationChain(service: Service, record: RunRecord): RunRecord[] {
  const all = runRecords(service).filter(r => r.operation === 'rollback' && !r.dryRun && r.id !== record.id)
  const chain: RunRecord[] = []
  let current = record
  for (;;) {
    const prev = all
      .filter(
        r =>
          r.level !== undefined &&
          current.level !== undefined &&
          r.level === current.level - 1 &&
          (r.status === 'failed' || r.status === 'refused') &&
          r.startedAt <= current.startedAt &&
          Date.parse(current.startedAt) - Date.parse(r.endedAt ?? r.startedAt) < 10 * 60_000
      )
      .at(-1)
    if (!prev) return chain
    chain.unshift(prev)
    current = prev
  }
}

/** nginx's access log files, from the configuration nginx reads. */
async function accessLogs(service: Service): Promise<string[]> {
  const facts = await nginxFacts(service.config).catch(() => undefined)
  return (facts?.logFiles ?? []).filter(f => !/error/i.test(path.basename(f)) && existsSync(f))
}

/**
 * The facts the incident states instead of template words: the severity assess measured, the detection time (the
 * failed run, else the first failing assess, else the breach/emergency start), the downtime seen through nginx,
 * validate's verdict after the rollback, and every earlier level of an escalation.
 */
export async function incidentFacts(
  service: Service,
  record: RunRecord,
  given: Pick<IncidentRequest, 'detectedAt' | 'failedRunUrl' | 'triggerUrl'> = {}
): Promise<IncidentFacts & { detectedAt: string }> {
  const { config } = service
  const escalation = escalationChain(service, record)
  const begin = escalation[0]?.startedAt ?? record.startedAt
  const assessed = lastAssessment(config)
  const breach = breachRecord(config)
  let detectedAt = begin
  let detectedBy = 'the rollback start: no earlier detection was recorded'
  if (given.detectedAt && Date.parse(given.detectedAt) <= Date.parse(begin)) {
    detectedAt = given.detectedAt
    detectedBy = 'the failed deployment run'
  } else if (assessed?.firstFailingAt && assessed.firstFailingAt <= begin) {
    detectedAt = assessed.firstFailingAt
    detectedBy = `the first failing assess (${assessed.severity})`
  } else if (breach && breach.breachAt <= begin) {
    detectedAt = breach.breachAt
    detectedBy = 'the security emergency'
  }
  // Only an assessment made before the rollback (within a day) speaks for its severity.
  const severity =
    assessed &&
    assessed.at <= begin &&
    Date.parse(begin) - Date.parse(assessed.at) < 86_400_000 &&
    assessed.severity !== 'INCONCLUSIVE'
      ? assessed.severity
      : undefined
  const validated = lastValidation(config)
  const validation = validated && record.endedAt && validated.at >= record.endedAt ? validated : undefined
  let downtime: IncidentFacts['downtime']
  const end = record.endedAt ?? new Date().toISOString()
  for (const file of await accessLogs(service)) {
    const d = nginxDowntime(readFileSync(file, 'utf8').slice(-20_000_000), detectedAt, end)
    if (d && (!downtime || d.badResponses > downtime.badResponses)) downtime = d
  }
  return {
    severity,
    detectedAt,
    detectedBy,
    downtime,
    validation,
    escalation,
    triggerUrl: given.triggerUrl,
    failedRunUrl: given.failedRunUrl
  }
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
  const labels = incidentLabels(config.environment)
  await api.ensureLabels(labels)
  const existing = await api.findOpenIncident(fingerprint)
  const facts = await incidentFacts(service, record, req)
  let issue = existing
  if (existing) await api.commentOnIssue(existing.number, escalationComment(record, { runUrl: req.runUrl }))
  else {
    const analysis = await analyse(service, record, { fullDiff: req.fullDiff }).catch(() => undefined)
    issue = await api.createIssue(
      incidentTitle(record.reason, record),
      incidentBody(record, { runUrl: req.runUrl, analysis, fingerprint, ...facts }),
      labels
    )
    await api.commentOnIssue(
      issue.number,
      postMortemBody({
        record,
        owner: req.owner ?? 'the on-call engineer',
        incidentUrl: issue.html_url,
        facts
      })
    )
  }
  if ((record.status === 'success' || record.status === 'failed') && !record.dryRun && req.sha)
    await recordDeployments(api, config.environment, record, req.sha, req.failedSha)
  return {
    issueNumber: issue!.number,
    issueUrl: issue!.html_url,
    created: !existing,
    notification: stakeholderNotification(record, facts)
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
