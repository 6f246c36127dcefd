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

/** Only a validation proves health: 'Verify previous environment' or 'Wait for health' do not. */
const VERIFY_STEP = /validat/i
/** A health check that failed still says the services are NOT healthy. */
const HEALTH_STEP = /verif|health|smoke/i

function moments(record: RunRecord, detectedAt: string | undefined, facts: IncidentFacts = {}): Moments {
  const ran = record.steps.filter(s => s.startedAt)
  const changes = ran.filter(s => s.destructive)
  const verification = ran.filter(s => VERIFY_STEP.test(s.name)).at(-1)
  const validated = facts.validation
  if (validated && record.status === 'success' && !record.dryRun)
    return {
      detected: detectedAt ?? record.startedAt,
      started: changes[0]?.startedAt ?? record.startedAt,
      completed: changes.at(-1)?.endedAt ?? record.endedAt,
      verified: validated.passed ? validated.at : undefined,
      unverifiedBy: validated.passed
        ? undefined
        : {
            name: 'backout validate',
            status: 'failed',
            endedAt: validated.at,
            detail: '',
            destructive: false
          }
    }
  return {
    detected: detectedAt ?? record.startedAt,
    // Initiated: the first step that changed something; completed: the last one finished.
    started: changes[0]?.startedAt ?? record.startedAt,
    completed: record.status === 'success' ? (changes.at(-1)?.endedAt ?? record.endedAt) : undefined,
    verified: verification?.status === 'ok' ? verification.endedAt : undefined,
    unverifiedBy:
      verification && verification.status !== 'ok'
        ? verification
        : verification
          ? undefined
          : ran.filter(s => HEALTH_STEP.test(s.name) && s.status === 'failed').at(-1)
  }
}

function timelineLines(
  record: RunRecord,
  detectedAt: string | undefined,
  facts: IncidentFacts = {}
): string[] {
  const m = moments(record, detectedAt, facts)
  const by = facts.detectedBy ? ` (${inert(facts.detectedBy)})` : ''
  const lines = [`- **${utc(m.detected)}:** Issue detected${by}`]
  // Every earlier level of the same escalation, in order.
  for (const r of facts.escalation ?? [])
    lines.push(
      `- **${utc(r.startedAt)}:** Level ${r.level ?? '?'} initiated`,
      `- **${utc(r.endedAt)}:** Level ${r.level ?? '?'} ${r.status}${r.error ? `: ${cell(r.error, 160)}` : ''} — escalating`
    )
  lines.push(
    `- **${utc(m.started)}:** Rollback initiated${facts.escalation?.length ? ` (Level ${record.level ?? '?'})` : ''}`
  )
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

export interface TitleContext {
  service: string
  environment: string
  from?: string
  to?: string
}

/** The environment as a title word: "production" → "Production". */
function environmentWord(environment: string): string {
  const flat = environment.replace(/\s+/g, ' ').trim() || 'Production'
  return flat.charAt(0).toUpperCase() + flat.slice(1)
}

/**
 * The runbook's "Production Rollback: [Brief Description]", with the environment's own name, and — given the
 * record — the service and the versions: "Staging Rollback: api v2.4.0 → v2.3.9: error rate 34%".
 */
export function incidentTitle(reason: string, context?: TitleContext): string {
  const brief = reason.replace(/\s+/g, ' ').trim() || 'no reason given'
  const what = context
    ? `${context.service} ${context.from ?? '?'} → ${context.to ?? '?'}: `.replace(/\s+/g, ' ')
    : ''
  const text = `${what}${brief}`
  return `${environmentWord(context?.environment ?? 'production')} Rollback: ${text.length > 200 ? `${text.slice(0, 199)}…` : text}`
}

/** The runbook's labels ("incident,production,rollback") with the incident's own environment. */
export function incidentLabels(environment: string): string[] {
  const label =
    environment
      .trim()
      .toLowerCase()
      .replace(/[^a-z0-9._-]+/g, '-')
      .slice(0, 50) || 'production'
  return ['incident', label, 'rollback']
}

/** Facts measured around the run, not in its record: they replace the template's placeholders. */
export interface IncidentFacts {
  /** The severity assess measured (the record's own wins when it has one). */
  severity?: string
  /** What the detection time is: the failed deployment run, the first failing assess, the emergency start. */
  detectedBy?: string
  /** Downtime as users saw it through nginx: 502/503/504 answers in the access log. */
  downtime?: { seconds: number; badResponses: number; from: string; to: string }
  /** `backout validate` after the rollback: only this says "verified healthy" and "error rate normal". */
  validation?: { at: string; passed: boolean; errorRate?: string; p95?: string }
  /** Earlier levels of the same escalation, oldest first. */
  escalation?: RunRecord[]
  /** The ChatOps comment that triggered the rollback. */
  triggerUrl?: string
  /** The failed deployment run. */
  failedRunUrl?: string
}

export interface IncidentExtras extends IncidentFacts {
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
  const link = (url: string): string => inert(url.replace(/\s/g, ''))
  const links = [
    extras.triggerUrl ? `- Triggered by: ${link(extras.triggerUrl)}` : undefined,
    extras.failedRunUrl ? `- Failed deployment run: ${link(extras.failedRunUrl)}` : undefined,
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
    `- **Severity:** ${inert(record.severity ?? extras.severity ?? 'not assessed')}`,
    `- **Duration:** ${durationWithRto(record)}`,
    `- **Downtime (through nginx):** ${downtimeText(extras.downtime)}`,
    `- **Rollback Level:** ${levelText(record)}`,
    `- **Status:** ${statusText(record)}`,
    `- **Service:** ${inert(record.service)} (${inert(record.environment)})`,
    `- **From version:** ${inert(record.from ?? 'unknown')}`,
    `- **To version:** ${inert(record.to ?? 'unknown')}`,
    `- **Reason:** ${inert(record.reason)}`,
    '',
    '## Timeline',
    '',
    ...timelineLines(record, extras.detectedAt, extras),
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

export interface NotificationOptions extends IncidentFacts {
  /** When the problem was detected (the disruption's start for the customer text). */
  detectedAt?: string
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
  const v = options.validation
  const m = moments(record, options.detectedAt, options)
  const status = !succeeded
    ? [`- Rollback did not complete: ${plain(record.error ?? record.status)}`, '- Incident is still open']
    : !v
      ? [
          m.verified
            ? "- Services answer through nginx (the rollback's own validation)"
            : '- Services not verified',
          '- Error rate: not measured after the rollback (run: backout validate)',
          '- Response time: not measured after the rollback (run: backout validate)'
        ]
      : v.passed
        ? [
            '- All services healthy (backout validate passed)',
            `- Error rate normal${v.errorRate ? ` (${plain(v.errorRate)})` : ''}`,
            `- Response time normal${v.p95 ? ` (p95 ${plain(v.p95)})` : ''}`
          ]
        : [
            '- backout validate FAILED after the rollback: services are not verified healthy',
            '- Incident is still open'
          ]
  const start = options.downtime?.from ?? m.detected
  const end = options.downtime?.to ?? m.verified ?? m.completed
  return [
    `Subject: ${environmentWord(record.environment)} Rollback - ${plain(record.service)}`,
    '',
    `Severity: ${plain(record.severity ?? options.severity ?? 'not assessed')}`,
    `Status: ${plain(statusText(record, plain))}`,
    `Environment: ${plain(record.environment)}`,
    `Rollback Level: ${record.level ?? 'not chosen'}`,
    `Target Version: ${plain(record.to ?? 'unknown')}`,
    `Downtime: ${downtimeText(options.downtime, record)}`,
    `Data Loss: ${dataLossPlain(record)}`,
    '',
    'Actions Taken:',
    ...(actions.length ? actions.map(plain) : ['- None completed']),
    '',
    'Current Status:',
    ...status,
    '',
    'Next Steps:',
    `- Continued monitoring for ${options.monitorHours ?? 2} hours`,
    '- Root cause analysis',
    '- Fix in development',
    '',
    `Contact: ${plain(options.contact ?? 'the on-call engineer')}`,
    ...(succeeded && end
      ? [
          '',
          'Customer Communication (if applicable):',
          `We experienced a brief service disruption between ${utc(start)} and ${utc(end)}.`,
          'The issue has been resolved and all services are now operating normally.',
          'We apologize for any inconvenience.'
        ]
      : [])
  ].join('\n')
}

/** Downtime measured through nginx, or what is known without a measurement. */
function downtimeText(downtime: IncidentFacts['downtime'], record?: RunRecord): string {
  if (downtime)
    return `${duration(downtime.seconds * 1000)} (${downtime.badResponses} 502/503/504 answers through nginx, ${utc(downtime.from)} – ${utc(downtime.to)})`
  return record
    ? `not measured through nginx (at most the rollback's duration, ${duration(record.durationMs)}, if it was down throughout)`
    : 'not measured through nginx (no 502/503/504 in its access log, or no access log found)'
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
  /** What was measured around the run (severity, detection, downtime, validation, escalation). */
  facts?: IncidentFacts & { detectedAt?: string }
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
    `# Post-Mortem: ${inert(input.title ?? incidentTitle(record.reason, record))}`,
    '',
    '## Metadata',
    `- **Date:** ${utc(record.startedAt)}`,
    `- **Duration:** ${durationWithRto(record)}`,
    `- **Severity:** ${inert(record.severity ?? input.facts?.severity ?? 'not assessed')}`,
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
    ...timelineLines(record, input.facts?.detectedAt, input.facts),
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

/**
 * An ERROR-level (or worse) log line: the level as a word of its own in capitals, a JSON `"level": "error"`, or
 * logfmt `level=error` — not any line that merely contains the word "error" ("0 errors", "error_rate=0").
 */
const ERROR_LEVEL =
  /\b(ERROR|FATAL|CRITICAL|PANIC|CRIT|EMERG|ALERT)\b|"(level|severity)"\s*:\s*"(error|fatal|critical|panic)"|\blevel=(error|fatal|critical|panic)\b|\[(error|crit|alert|emerg)\]/

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

/** The n most frequent ERROR-level lines in a log (runbook: `grep -i error | sort | uniq -c`), most frequent first. */
export function topErrorLines(logText: string, n: number): ErrorLine[] {
  const counts = new Map<string, number>()
  for (const raw of logText.split(/\r?\n/)) {
    if (!ERROR_LEVEL.test(raw)) continue
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

/** One config file that differs between the stable and the failed state — names and hashes, never values. */
export interface ConfigChange {
  file: string
  change: 'added' | 'removed' | 'modified'
  /** sha256 in the stable (old) and failed (new) state. */
  oldSha256?: string
  newSha256?: string
  /** key=value files: the keys whose values changed (the values are never shown). */
  keys?: { key: string; change: 'added' | 'removed' | 'modified' }[]
}

/** .env-like files hold secrets: their content never goes into an incident, not even with the full diff. */
export function isSecretFile(file: string): boolean {
  const name = file.replace(/\\/g, '/').split('/').at(-1) ?? ''
  return /^\.env($|\.)|\.env$|secret|credential|password|\.pem$|\.key$|\.p12$|\.pfx$|(^|[._-])token/i.test(
    name
  )
}

const KEY_VALUE_FILE = /^\.env($|\.)|\.env$|\.properties$|\.ini$|\.cfg$|\.conf$/i
const KEY_LINE = /^\s*(?:export\s+)?([A-Za-z_][\w.-]*)\s*=(.*)$/

/** KEY=value pairs of a file, or undefined when it is not a key=value file. */
function keyValues(file: string, text: string): Map<string, string> | undefined {
  const name = file.replace(/\\/g, '/').split('/').at(-1) ?? ''
  const lines = text.split(/\r?\n/).filter(l => l.trim() && !/^\s*[#;]/.test(l))
  if (!KEY_VALUE_FILE.test(name) && !(lines.length && lines.every(l => KEY_LINE.test(l)))) return undefined
  const out = new Map<string, string>()
  for (const l of lines) {
    const m = KEY_LINE.exec(l)
    if (m) out.set(m[1]!, m[2]!.trim())
  }
  return out
}

const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex')

/**
 * The config files that differ from the stable state to the failed one: names, old/new sha256 and — for key=value
 * files — the changed keys. Values never appear. Pure.
 */
export function configChanges(
  stable: ReadonlyMap<string, Buffer>,
  failed: ReadonlyMap<string, Buffer>
): ConfigChange[] {
  const files = [...new Set([...stable.keys(), ...failed.keys()])].sort()
  const out: ConfigChange[] = []
  for (const file of files) {
    const a = stable.get(file)
    const b = failed.get(file)
    if (a && b && a.equals(b)) continue
    const change: ConfigChange = {
      file,
      change: !a ? 'added' : !b ? 'removed' : 'modified',
      ...(a ? { oldSha256: sha256(a) } : {}),
      ...(b ? { newSha256: sha256(b) } : {})
    }
    const before = a ? keyValues(file, a.toString('utf8')) : new Map<string, string>()
    const after = b ? keyValues(file, b.toString('utf8')) : new Map<string, string>()
    if (before && after) {
      const keys = [...new Set([...before.keys(), ...after.keys()])].sort()
      change.keys = keys
        .filter(k => before.get(k) !== after.get(k))
        .map(k => ({ key: k, change: !before.has(k) ? 'added' : !after.has(k) ? 'removed' : 'modified' }))
    }
    out.push(change)
  }
  return out
}

export interface Analysis {
  topErrors: readonly ErrorLine[]
  /** What changed in the config files from the stable to the failed state (names, hashes, keys). */
  configChanges?: readonly ConfigChange[]
  /** Opt-in only: a unified diff (stable → failed) of the files that are not secret files. */
  configDiff?: string
  riskyFiles: readonly string[]
}

const short = (sha: string | undefined): string => (sha ? sha.slice(0, 12) : '—')

/** The incident's "Failure Analysis" section. */
export function analysisSection(analysis: Analysis): string {
  const errors = analysis.topErrors.map(e => `${String(e.count).padStart(6)}  ${e.line}`).join('\n')
  const diff = cap((analysis.configDiff ?? '').trim(), 20_000)
  const errorFence = fence(errors)
  const diffFence = fence(diff)
  const changes = analysis.configChanges ?? []
  const tick = (t: string): string => `\`${t.replace(/`/g, "'")}\``
  return [
    '## Failure Analysis',
    '',
    '### Top error lines',
    '',
    ...(errors ? [errorFence, errors, errorFence] : ['No ERROR-level lines found in the logs.']),
    '',
    '### Configuration changes (stable → failed)',
    '',
    ...(changes.length
      ? [
          '| File | Change | sha256 stable | sha256 failed | Keys changed (values hidden) |',
          '|---|---|---|---|---|',
          ...changes.map(
            c =>
              `| ${cell(c.file, 200)} | ${c.change} | ${short(c.oldSha256)} | ${short(c.newSha256)} | ` +
              `${c.keys ? c.keys.map(k => `${cell(k.key, 80)}=*** (${k.change})`).join(', ') || '—' : '—'} |`
          )
        ]
      : ['No configuration differences.']),
    ...(diff
      ? [
          '',
          '<details><summary>Full diff (stable → failed; secret files left out)</summary>',
          '',
          `${diffFence}diff`,
          diff,
          diffFence,
          '',
          '</details>'
        ]
      : []),
    '',
    '### Risky files changed',
    '',
    ...(analysis.riskyFiles.length
      ? analysis.riskyFiles.map(f => `- ${tick(f)}`)
      : ['None (no SQL, migrations/, compose or .env files changed).'])
  ].join('\n')
}

// ---------------------------------------------------------------------------------------------------------
// Downtime through nginx.

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']
const ACCESS_LINE =
  /\[(\d{2})\/(\w{3})\/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})\] "[^"]*" (\d{3}) /

/**
 * Downtime as users saw it, from nginx's access log (combined/common format): the 502/503/504 answers between
 * `from` and `to`, and the span from the first to the last of them (at least 1 s). Undefined when there were none.
 */
export function nginxDowntime(
  accessLog: string,
  from: string,
  to: string
): IncidentFacts['downtime'] | undefined {
  const start = Date.parse(from)
  const end = Date.parse(to)
  let first: number | undefined
  let last: number | undefined
  let bad = 0
  for (const line of accessLog.split('\n')) {
    const m = ACCESS_LINE.exec(line)
    if (!m || !['502', '503', '504'].includes(m[10]!)) continue
    const month = MONTHS.indexOf(m[2]!)
    const offset = (m[7] === '-' ? -1 : 1) * (Number(m[8]) * 60 + Number(m[9])) * 60_000
    const at = Date.UTC(Number(m[3]), month, Number(m[1]), Number(m[4]), Number(m[5]), Number(m[6])) - offset
    if (at < start - 999 || at > end) continue
    bad++
    first = first === undefined ? at : Math.min(first, at)
    last = last === undefined ? at : Math.max(last, at)
  }
  if (first === undefined || last === undefined) return undefined
  return {
    seconds: Math.max(1, Math.round((last - first) / 1000) + 1),
    badResponses: bad,
    from: new Date(first).toISOString(),
    to: new Date(last + 999).toISOString()
  }
}
