/**
 * The runbook's post-rollback paperwork, rendered from the run record: the incident issue, the post-mortem
 * template, the internal stakeholder notification, the comment a re-run adds to an open incident, and the
 * failure-analysis section (runbook steps 5 and 6). Pure: text in, text out.
 */
import { createHash } from 'node:crypto'
import type { Level, RunRecord, StepRecord } from './run-record'

/** The labels the runbook files incidents with (`gh issue create --label "incident,production,rollback"`). */
export const INCIDENT_LABELS = ['incident', 'production', 'rollback'] as const

/** GitHub rejects issue and comment bodies longer than this. */
export const GITHUB_BODY_MAX = 65536

const LEVEL_NAME: Record<Level, string> = {
  1: 'quick rollback (blue/green switch)',
  2: 'full rollback',
  3: 'point-in-time recovery'
}

// ---------------------------------------------------------------------------------------------------------
// Fingerprint: one open incident per failing deployment, however many times the rollback is re-run.

/** A stable id for (service, environment, failing deployment ref): 16 hex characters. */
export function incidentFingerprint(service: string, environment: string, deploymentRef: string): string {
  return createHash('sha256')
    .update(JSON.stringify([service, environment, deploymentRef]))
    .digest('hex')
    .slice(0, 16)
}

/** The hidden HTML comment an incident body carries so a re-run finds the issue again. */
export function fingerprintMarker(fingerprint: string): string {
  if (!/^[A-Za-z0-9._-]{1,100}$/.test(fingerprint))
    throw new Error(
      `fingerprint ${JSON.stringify(fingerprint.slice(0, 120))} must match [A-Za-z0-9._-]{1,100}`
    )
  return `<!-- backout:fingerprint=${fingerprint} -->`
}

function recordFingerprint(record: RunRecord): string {
  return incidentFingerprint(record.service, record.environment, record.from ?? 'unknown')
}

// ---------------------------------------------------------------------------------------------------------
// Formatting.

/** User-supplied text made inert in markdown: no HTML (so no fake fingerprint markers). */
function inert(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

/**
 * Breaks any fingerprint marker text that is not ours (in a code block, say) with a zero-width space, so
 * findOpenIncident can only match the marker incidentBody appends.
 */
function withoutMarkers(text: string): string {
  return text.replace(/backout:fingerprint=/g, 'backout:fingerprint\u200b=')
}

function cell(text: string, max = 300): string {
  const flat = inert(text)
    .replace(/\r?\n|\r/g, ' ')
    .replace(/\|/g, '\\|')
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat
}

/** ISO-8601 → "2025-01-02 14:30:22 UTC"; anything unparsable is shown as given. */
function utc(iso: string | undefined): string {
  if (!iso) return 'unknown'
  const date = new Date(iso)
  if (Number.isNaN(date.getTime())) return inert(iso)
  return `${date.toISOString().slice(0, 19).replace('T', ' ')} UTC`
}

function duration(ms: number | undefined): string {
  if (ms === undefined) return 'unknown'
  const total = Math.round(ms / 1000)
  const minutes = Math.floor(total / 60)
  return minutes === 0 ? `${total} s` : `${minutes} min ${total % 60} s`
}

function durationWithRto(record: RunRecord): string {
  const took = duration(record.durationMs)
  if (record.durationMs === undefined || !record.rtoSeconds) return took
  const met = record.durationMs <= record.rtoSeconds * 1000
  return `${took} (RTO ${duration(record.rtoSeconds * 1000)}: ${met ? 'met' : 'exceeded'})`
}

function levelText(record: RunRecord): string {
  return record.level ? `${record.level} — ${LEVEL_NAME[record.level]}` : 'not chosen'
}

function statusText(record: RunRecord, escape: (text: string) => string = inert): string {
  if (record.dryRun) return 'Dry run — planned only, nothing was changed'
  switch (record.status) {
    case 'success':
      return 'Rollback completed successfully'
    case 'failed':
      return `Rollback failed: ${escape(record.error ?? 'no error recorded')}`
    case 'refused':
      return `Rollback refused before changing anything: ${escape(record.error ?? 'no reason recorded')}`
    case 'planned':
      return 'Planned only, nothing was changed'
    case 'running':
      return 'Still running (or interrupted before it finished)'
  }
}

function dataLossText(record: RunRecord): string {
  const loss = record.dataLoss
  if (!loss) {
    return record.level === 3
      ? 'Unknown — the Level 3 restore recorded no data-loss window; check the recovery target'
      : 'None (Level 1/2 changes no data)'
  }
  const wal = loss.walReplayed ? 'WAL replayed' : 'no WAL replay'
  const note = loss.note ? `; ${inert(loss.note)}` : ''
  return `writes after ${utc(loss.restoredTo)} are lost (window ${duration(loss.windowSeconds * 1000)}, ${wal})${note}`
}

/** The longest run of backticks in text, plus one: a fence that text cannot close. */
function fence(text: string): string {
  const longest = Math.max(2, ...[...text.matchAll(/`+/g)].map(m => m[0].length))
  return '`'.repeat(longest + 1)
}

function cap(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}\n… (${text.length - max} more characters cut)` : text
}

function stepTable(steps: readonly StepRecord[]): string {
  const rows = steps.map(
    s =>
      `| ${cell(s.name, 80)} | ${s.status} | ${s.startedAt ? utc(s.startedAt) : ''} | ` +
      `${s.durationMs === undefined ? '' : duration(s.durationMs)} | ${s.destructive ? 'yes' : ''} | ${cell(s.detail)} |`
  )
  return [
    `<details><summary>Steps (${steps.length})</summary>`,
    '',
    '| Step | Status | Started | Took | Changes data | Detail |',
    '|---|---|---|---|---|---|',
    ...rows,
    '',
    '</details>'
  ].join('\n')
}

// ---------------------------------------------------------------------------------------------------------
// Timeline: the runbook's four moments, with real timestamps from the record.

interface Moments {
  detected: string | undefined
  started: string | undefined
  completed: string | undefined
  verified: string | undefined
  /** The verification step, when one ran and did not pass. */
  unverifiedBy?: StepRecord
}

const VERIFY_STEP = /verif|validat|health|smoke/i

function moments(record: RunRecord, detectedAt: string | undefined): Moments {
  const ran = record.steps.filter(s => s.startedAt)
  const changes = ran.filter(s => s.destructive)
  const verification = ran.filter(s => VERIFY_STEP.test(s.name)).at(-1)
  return {
    detected: detectedAt ?? record.startedAt,
    // Initiated: the first step that changed something; completed: the last one finished.
    started: changes[0]?.startedAt ?? record.startedAt,
    completed: record.status === 'success' ? (changes.at(-1)?.endedAt ?? record.endedAt) : undefined,
    verified: verification?.status === 'ok' ? verification.endedAt : undefined,
    unverifiedBy: verification && verification.status !== 'ok' ? verification : undefined
  }
}

function timelineLines(record: RunRecord, detectedAt: string | undefined): string[] {
  const m = moments(record, detectedAt)
  const lines = [`- **${utc(m.detected)}:** Issue detected`, `- **${utc(m.started)}:** Rollback initiated`]
  if (m.completed) lines.push(`- **${utc(m.completed)}:** Rollback completed`)
  else lines.push(`- **${utc(record.endedAt)}:** Rollback ended without completing (${record.status})`)
  if (m.verified) lines.push(`- **${utc(m.verified)}:** Services verified healthy`)
  else if (m.unverifiedBy)
    lines.push(
      `- **${utc(m.unverifiedBy.endedAt)}:** Services NOT verified healthy (${cell(m.unverifiedBy.name, 80)}: ${m.unverifiedBy.status})`
    )
  else lines.push('- **—:** Services not verified (no verification step ran)')
  return lines
}

// ---------------------------------------------------------------------------------------------------------
// Incident issue (runbook step 4).

export function incidentTitle(reason: string): string {
  const brief = reason.replace(/\s+/g, ' ').trim() || 'no reason given'
  return `Production Rollback: ${brief.length > 200 ? `${brief.slice(0, 199)}…` : brief}`
}

export interface IncidentExtras {
  /** The workflow run's URL. */
  runUrl?: string
  /** When the problem was detected, if earlier than the first step (an alert's time). */
  detectedAt?: string
  usersAffected?: string
  /** Defaults to the record's service. */
  servicesAffected?: string[]
  /** A rendered analysisSection(), placed before Next Steps. */
  analysis?: string
  /** Defaults to incidentFingerprint(service, environment, record.from). */
  fingerprint?: string
}

/** The runbook's incident report, filled from the run record. Always within GitHub's body limit. */
export function incidentBody(record: RunRecord, extras: IncidentExtras = {}): string {
  const services = extras.servicesAffected?.length ? extras.servicesAffected : [record.service]
  const resolution =
    record.status === 'success' && !record.dryRun
      ? `Rolled back to version ${inert(record.to ?? 'unknown')} using Level ${record.level ?? '?'} rollback procedure.`
      : `Not resolved by this run — ${statusText(record)}.`
  const links = [
    extras.runUrl ? `- Workflow run: ${extras.runUrl}` : undefined,
    record.backupId ? `- Backup: \`${inert(record.backupId)}\`` : undefined,
    record.safetyBackupId
      ? `- Safety backup (state before this rollback): \`${inert(record.safetyBackupId)}\``
      : undefined,
    `- Run record: \`${inert(record.id)}\``
  ].filter(Boolean)

  const head = [
    '## Incident Summary',
    '',
    `- **Date:** ${utc(record.startedAt)}`,
    `- **Severity:** ${inert(record.severity ?? 'not assessed')}`,
    `- **Duration:** ${durationWithRto(record)}`,
    `- **Rollback Level:** ${levelText(record)}`,
    `- **Status:** ${statusText(record)}`,
    `- **Service:** ${inert(record.service)} (${inert(record.environment)})`,
    `- **From version:** ${inert(record.from ?? 'unknown')}`,
    `- **To version:** ${inert(record.to ?? 'unknown')}`,
    `- **Reason:** ${inert(record.reason)}`,
    '',
    '## Timeline',
    '',
    ...timelineLines(record, extras.detectedAt),
    '',
    '## Impact',
    '',
    `- **Users Affected:** ${inert(extras.usersAffected ?? '[Estimate]')}`,
    `- **Services Affected:** ${services.map(inert).join(', ')}`,
    `- **Data Loss:** ${dataLossText(record)}`,
    '',
    '## Root Cause',
    '',
    '[To be determined - will update after analysis]',
    '',
    '## Resolution',
    '',
    resolution,
    ''
  ].join('\n')
  const tail = [
    '## Next Steps',
    '',
    '- [ ] Root cause analysis',
    '- [ ] Fix implementation',
    '- [ ] Testing in staging',
    '- [ ] Post-mortem meeting',
    '',
    '## Links',
    '',
    ...links,
    '',
    stepTable(record.steps),
    ''
  ].join('\n')
  const marker = fingerprintMarker(extras.fingerprint ?? recordFingerprint(record))
  // The analysis is the one part that can be large; it gives way so the body stays postable, and the
  // marker always survives at the end.
  const limit = GITHUB_BODY_MAX - marker.length - 200
  const room = limit - head.length - tail.length - 100
  const analysis = extras.analysis ? `${cap(extras.analysis, Math.max(room, 0))}\n\n` : ''
  return `${cap(withoutMarkers(`${head}\n${analysis}${tail}`), limit)}\n${marker}\n`
}

// ---------------------------------------------------------------------------------------------------------
// Re-runs on the same incident.

/** The comment a re-run adds to the open incident instead of filing a second issue. */
export function escalationComment(record: RunRecord, extras: { runUrl?: string } = {}): string {
  const advice =
    record.status !== 'failed'
      ? undefined
      : record.level && record.level < 3
        ? `> [!WARNING]\n> Level ${record.level} failed. Escalate: consider a Level ${record.level + 1} rollback, and page the on-call engineer.`
        : '> [!CAUTION]\n> Level 3 failed. Escalate to the on-call engineer and the database owner: manual recovery is needed.'
  return cap(
    withoutMarkers(
      [
        `### Rollback re-run: ${record.dryRun ? 'dry run' : record.status} at ${utc(record.startedAt)}`,
        '',
        `- **Rollback Level:** ${levelText(record)}`,
        `- **From → To:** ${inert(record.from ?? 'unknown')} → ${inert(record.to ?? 'unknown')}`,
        `- **Reason:** ${inert(record.reason)}`,
        `- **Status:** ${statusText(record)}`,
        `- **Duration:** ${durationWithRto(record)}`,
        `- **Data Loss:** ${dataLossText(record)}`,
        ...(extras.runUrl ? [`- **Workflow run:** ${extras.runUrl}`] : []),
        ...(record.safetyBackupId ? [`- **Safety backup:** \`${inert(record.safetyBackupId)}\``] : []),
        '',
        ...(advice ? [advice, ''] : []),
        stepTable(record.steps),
        ''
      ].join('\n')
    ),
    GITHUB_BODY_MAX - 100
  )
}

// ---------------------------------------------------------------------------------------------------------
// Stakeholder notification (runbook step 3).

export interface NotificationOptions {
  /** Who to contact; defaults to the on-call engineer. */
  contact?: string
  /** How long monitoring continues, in hours (runbook: "Continued monitoring for [X] hours"). */
  monitorHours?: number
}

/** The runbook's internal notification, as plain text ready for mail or chat. */
export function stakeholderNotification(record: RunRecord, options: NotificationOptions = {}): string {
  const succeeded = record.status === 'success' && !record.dryRun
  const actions = record.steps.filter(s => s.status === 'ok').map(s => `- ${s.name}: ${s.detail}`.trim())
  const plain = (text: string): string => text.replace(/\s+/g, ' ').trim()
  return [
    `Subject: Production Rollback - ${plain(record.service)}`,
    '',
    `Severity: ${plain(record.severity ?? 'not assessed')}`,
    `Status: ${plain(statusText(record, plain))}`,
    `Environment: ${plain(record.environment)}`,
    `Rollback Level: ${record.level ?? 'not chosen'}`,
    `Target Version: ${plain(record.to ?? 'unknown')}`,
    `Downtime: at most ${duration(record.durationMs)} (the rollback's duration)`,
    `Data Loss: ${dataLossPlain(record)}`,
    '',
    'Actions Taken:',
    ...(actions.length ? actions.map(plain) : ['- None completed']),
    '',
    'Current Status:',
    ...(succeeded
      ? ['- All services healthy', '- Error rate normal', '- Response time normal']
      : [`- Rollback did not complete: ${plain(record.error ?? record.status)}`, '- Incident is still open']),
    '',
    'Next Steps:',
    `- Continued monitoring for ${options.monitorHours ?? 2} hours`,
    '- Root cause analysis',
    '- Fix in development',
    '',
    `Contact: ${plain(options.contact ?? 'the on-call engineer')}`
  ].join('\n')
}

function dataLossPlain(record: RunRecord): string {
  if (!record.dataLoss) return record.level === 3 ? 'Unknown (no window recorded)' : 'None'
  const { restoredTo, windowSeconds, walReplayed } = record.dataLoss
  return `writes after ${utc(restoredTo)} lost (${duration(windowSeconds * 1000)}${walReplayed ? ', WAL replayed' : ''})`
}

// ---------------------------------------------------------------------------------------------------------
// Post-mortem (runbook step 10).

export interface ActionItem {
  action: string
  owner: string
  /** YYYY-MM-DD */
  due: string
}

export interface PostMortemInput {
  record: RunRecord
  /** Who owns the post-mortem and, by default, its action items. */
  owner: string
  /** Defaults to incidentTitle(record.reason). */
  title?: string
  /** How the problem was noticed (alert, customer report, assess step). */
  detection?: string
  /** The change or event that set it off. */
  trigger?: string
  contributingFactors?: string[]
  wentWell?: string[]
  wentWrong?: string[]
  gotLucky?: string[]
  /** Defaults to the runbook's follow-ups, owned by `owner`, due 2–14 days after the rollback. */
  actionItems?: ActionItem[]
  incidentUrl?: string
}

function isoDate(iso: string, plusDays: number): string {
  const base = new Date(iso)
  const date = Number.isNaN(base.getTime()) ? new Date(0) : base
  return new Date(date.getTime() + plusDays * 86_400_000).toISOString().slice(0, 10)
}

function bullets(items: readonly string[] | undefined, fallback: string): string[] {
  return items?.length ? items.map(i => `- ${inert(i)}`) : [`- ${fallback}`]
}

/** Facts the record itself shows about what went well and what did not. */
function observedFromRecord(record: RunRecord): { well: string[]; wrong: string[] } {
  const well: string[] = []
  const wrong: string[] = []
  if (record.durationMs !== undefined && record.rtoSeconds) {
    const line = `Rollback took ${duration(record.durationMs)} against an RTO of ${duration(record.rtoSeconds * 1000)}`
    ;(record.durationMs <= record.rtoSeconds * 1000 ? well : wrong).push(line)
  }
  if (record.safetyBackupId)
    well.push(`A safety backup was taken first (\`${inert(record.safetyBackupId)}\`)`)
  for (const s of record.steps.filter(s => s.status === 'failed'))
    wrong.push(`Step "${cell(s.name, 80)}" failed: ${cell(s.detail)}`)
  for (const s of record.steps.filter(
    s =>
      s.deadlineSeconds !== undefined && s.durationMs !== undefined && s.durationMs > s.deadlineSeconds * 1000
  ))
    wrong.push(`Step "${cell(s.name, 80)}" overran its ${s.deadlineSeconds} s deadline`)
  if (record.dataLoss) wrong.push(`Data was lost: ${dataLossText(record)}`)
  return { well, wrong }
}

export function postMortemBody(input: PostMortemInput): string {
  const { record, owner } = input
  const end = record.endedAt ?? record.startedAt
  const observed = observedFromRecord(record)
  const actionItems = input.actionItems ?? [
    { action: 'Root cause analysis', owner, due: isoDate(end, 2) },
    { action: 'Fix with a regression test', owner, due: isoDate(end, 7) },
    { action: 'Add monitoring/alerting for the trigger', owner, due: isoDate(end, 14) },
    { action: 'Update the rollback runbook with what was learned', owner, due: isoDate(end, 14) }
  ]
  const stepLines = record.steps
    .filter(s => s.startedAt)
    .map(
      s =>
        `- **${utc(s.startedAt)}:** ${cell(s.name, 80)} — ${s.status}${s.detail ? ` (${cell(s.detail)})` : ''}`
    )
  return [
    `# Post-Mortem: ${inert(input.title ?? incidentTitle(record.reason))}`,
    '',
    '## Metadata',
    `- **Date:** ${utc(record.startedAt)}`,
    `- **Duration:** ${durationWithRto(record)}`,
    `- **Severity:** ${inert(record.severity ?? 'not assessed')}`,
    `- **Services Affected:** ${inert(record.service)} (${inert(record.environment)})`,
    `- **Owner:** ${inert(owner)}`,
    ...(input.incidentUrl ? [`- **Incident:** ${input.incidentUrl}`] : []),
    '',
    '## Executive Summary',
    `${inert(record.service)} in ${inert(record.environment)} was rolled back from ${inert(record.from ?? 'unknown')} ` +
      `to ${inert(record.to ?? 'unknown')} (Level ${levelText(record)}) because: ${inert(record.reason)}. ` +
      `${statusText(record)}.`,
    '',
    '## Detection',
    `- **How it was detected:** ${inert(input.detection ?? '[Alert, customer report, assess step?]')}`,
    `- **Trigger:** ${inert(input.trigger ?? '[The change or event that set it off]')}`,
    '',
    '## Timeline',
    ...timelineLines(record, undefined),
    ...stepLines,
    '',
    '## Root Cause',
    '[Detailed explanation of what caused the issue]',
    '',
    '### Contributing Factors',
    ...bullets(
      input.contributingFactors,
      '[Code, configuration, migration, dependency, infrastructure, external?]'
    ),
    '',
    '## Impact',
    '- **Users Affected:** [Number/percentage]',
    '- **Revenue Impact:** [If applicable]',
    `- **Data Loss:** ${dataLossText(record)}`,
    '',
    '## Resolution',
    record.status === 'success' && !record.dryRun
      ? `Rolled back to version ${inert(record.to ?? 'unknown')} using the Level ${record.level ?? '?'} rollback procedure.`
      : `[How it was resolved — the automated rollback did not: ${statusText(record)}]`,
    '',
    '## What Went Well',
    ...bullets([...observed.well, ...(input.wentWell ?? [])], '[List things that worked well]'),
    '',
    '## What Went Wrong',
    ...bullets([...observed.wrong, ...(input.wentWrong ?? [])], '[List areas for improvement]'),
    '',
    '## Where We Got Lucky',
    ...bullets(input.gotLucky, '[What could have made this worse]'),
    '',
    '## Action Items',
    ...actionItems.map(a => `- [ ] ${inert(a.action)} - Owner: ${inert(a.owner)} - Due: ${inert(a.due)}`),
    '',
    '## Lessons Learned',
    '[Key takeaways]',
    ''
  ].join('\n')
}

// ---------------------------------------------------------------------------------------------------------
// Failure analysis (runbook steps 5 and 6).

export interface ErrorLine {
  line: string
  count: number
}

const ERROR_WORDS = /error|fatal|exception|panic|critical|traceback/i

/** A log line with its varying parts replaced, so repeats of one error count together. */
function normaliseLogLine(line: string): string {
  return line
    .replace(/\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?/g, '<time>')
    .replace(/\b\d{2}:\d{2}:\d{2}(?:[.,]\d+)?\b/g, '<time>')
    .replace(/\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b/gi, '<uuid>')
    .replace(/\b0x[0-9a-f]+\b/gi, '<hex>')
    .replace(/\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{12,}\b/gi, '<hex>')
    .replace(/\d+(?:\.\d+)?/g, '<n>')
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, 300)
}

/** The n most frequent error lines in a log (runbook: `grep -i error | sort | uniq -c`), most frequent first. */
export function topErrorLines(logText: string, n: number): ErrorLine[] {
  const counts = new Map<string, number>()
  for (const raw of logText.split(/\r?\n/)) {
    if (!ERROR_WORDS.test(raw)) continue
    const line = normaliseLogLine(raw)
    if (line) counts.set(line, (counts.get(line) ?? 0) + 1)
  }
  // Map keeps first-seen order, and sort is stable: equal counts stay in the order they first appeared.
  return [...counts]
    .map(([line, count]) => ({ line, count }))
    .sort((a, b) => b.count - a.count)
    .slice(0, Math.max(0, Math.floor(n)))
}

/** The changed paths the runbook calls risky: SQL, migrations/, compose files, .env files. */
export function riskyFiles(paths: readonly string[]): string[] {
  const risky = (path: string): boolean => {
    const p = path.replace(/\\/g, '/')
    const name = p.split('/').at(-1) ?? ''
    return (
      /\.sql$/i.test(name) ||
      /(^|\/)migrations\//i.test(p) ||
      /^(docker-)?compose(\.[\w-]+)*\.ya?ml$/i.test(name) ||
      /^\.env($|\.)/.test(name)
    )
  }
  return [...new Set(paths.filter(risky))]
}

export interface Analysis {
  topErrors: readonly ErrorLine[]
  /** Unified diff of the compose/config files between the failed and the stable version. */
  configDiff: string
  riskyFiles: readonly string[]
}

/** The incident's "Failure Analysis" section. */
export function analysisSection(analysis: Analysis): string {
  const errors = analysis.topErrors.map(e => `${String(e.count).padStart(6)}  ${e.line}`).join('\n')
  const diff = cap(analysis.configDiff.trim(), 20_000)
  const errorFence = fence(errors)
  const diffFence = fence(diff)
  return [
    '## Failure Analysis',
    '',
    '### Top error lines',
    '',
    ...(errors ? [errorFence, errors, errorFence] : ['No error lines found in the logs.']),
    '',
    '### Configuration diff (failed → stable)',
    '',
    ...(diff ? [`${diffFence}diff`, diff, diffFence] : ['No configuration differences.']),
    '',
    '### Risky files changed',
    '',
    ...(analysis.riskyFiles.length
      ? analysis.riskyFiles.map(f => `- \`${f.replace(/`/g, "'")}\``)
      : ['None (no SQL, migrations/, compose or .env files changed).'])
  ].join('\n')
}
