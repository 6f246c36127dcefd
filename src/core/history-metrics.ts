import type { RunRecord } from './run-record'
import { type HistoryEntry, parseHistoryLine } from './history'

/**
 * Rollback metrics from the runbook's history log: rollbacks by level and status, their durations, the
 * data-loss windows, and the two DORA figures a team reports — time to restore service (here: how long
 * the successful rollbacks took, from their start to the service validated) and, given the number of
 * deployments in the same period, the change failure rate.
 */
export interface HistoryMetrics {
  service: string
  environment: string
  total: number
  byLevelStatus: { level: number; status: string; count: number; durationSecondsSum: number }[]
  timeToRestoreSeconds: { mean: number; median: number; max: number } | undefined
  dataLossWindowSeconds: { last: number; max: number } | undefined
  lastRollbackAt: string | undefined
  /** Rollbacks / deployments, when the number of deployments is known. */
  changeFailureRatePercent: number | undefined
  deployments: number | undefined
  unparsedLines: number
}

const DATA_LOSS = /data-loss window (\d+)s/

export function historyMetrics(
  lines: readonly string[],
  labels: { service: string; environment: string },
  deployments?: number
): HistoryMetrics {
  const parsed = lines.filter(l => l.trim()).map(parseHistoryLine)
  const entries = parsed.filter((e): e is HistoryEntry => e !== undefined)
  const groups = new Map<string, HistoryMetrics['byLevelStatus'][number]>()
  for (const e of entries) {
    const key = `${e.level}/${e.status}`
    const g = groups.get(key) ?? { level: e.level, status: e.status, count: 0, durationSecondsSum: 0 }
    g.count++
    g.durationSecondsSum += e.durationSeconds
    groups.set(key, g)
  }
  const restores = entries
    .filter(e => e.status === 'success')
    .map(e => e.durationSeconds)
    .sort((a, b) => a - b)
  const losses = entries
    .map(e => DATA_LOSS.exec(e.reason))
    .filter(m => m !== null)
    .map(m => Number(m[1]))
  const last = entries.reduce<HistoryEntry | undefined>((a, e) => (!a || e.at > a.at ? e : a), undefined)
  return {
    ...labels,
    total: entries.length,
    byLevelStatus: [...groups.values()].sort((a, b) => a.level - b.level || a.status.localeCompare(b.status)),
    timeToRestoreSeconds: restores.length
      ? {
          mean: restores.reduce((s, x) => s + x, 0) / restores.length,
          median: restores[Math.floor((restores.length - 1) / 2)]!,
          max: restores[restores.length - 1]!
        }
      : undefined,
    dataLossWindowSeconds: losses.length
      ? { last: losses[losses.length - 1]!, max: Math.max(...losses) }
      : undefined,
    lastRollbackAt: last?.at.toISOString(),
    changeFailureRatePercent:
      deployments && deployments > 0 ? Math.min(100, (entries.length * 100) / deployments) : undefined,
    deployments,
    unparsedLines: parsed.length - entries.length
  }
}

const esc = (v: string): string => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')

/** The metrics in Prometheus' text format, for node_exporter's textfile collector. */
export function historyPrometheus(m: HistoryMetrics): string {
  const base = `service="${esc(m.service)}",environment="${esc(m.environment)}"`
  const out: string[] = []
  const metric = (name: string, type: string, help: string, samples: [string, number][]): void => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`)
    for (const [labels, value] of samples) out.push(`${name}{${base}${labels}} ${value}`)
  }
  const groups = m.byLevelStatus
  metric(
    'backout_rollbacks_total',
    'counter',
    'Rollbacks in the history log, by level and status.',
    groups.map(g => [`,level="${g.level}",status="${g.status}"`, g.count])
  )
  metric(
    'backout_rollback_duration_seconds_total',
    'counter',
    'Total duration of the rollbacks, by level and status.',
    groups.map(g => [`,level="${g.level}",status="${g.status}"`, g.durationSecondsSum])
  )
  if (m.timeToRestoreSeconds)
    metric(
      'backout_time_to_restore_seconds',
      'gauge',
      'Time to restore service (DORA): duration of the successful rollbacks.',
      Object.entries(m.timeToRestoreSeconds).map(([stat, v]) => [`,stat="${stat}"`, v])
    )
  if (m.dataLossWindowSeconds)
    metric(
      'backout_data_loss_window_seconds',
      'gauge',
      'Data-loss window of the rollbacks that restored data (last and max).',
      Object.entries(m.dataLossWindowSeconds).map(([stat, v]) => [`,stat="${stat}"`, v])
    )
  if (m.lastRollbackAt)
    metric('backout_last_rollback_timestamp_seconds', 'gauge', 'When the last rollback ended.', [
      ['', Date.parse(m.lastRollbackAt) / 1000]
    ])
  if (m.changeFailureRatePercent !== undefined)
    metric(
      'backout_change_failure_rate_percent',
      'gauge',
      'Change failure rate (DORA): rollbacks per deployment, %.',
      [['', m.changeFailureRatePercent]]
    )
  return out.join('\n') + '\n'
}

/**
 * The confirmation's time estimate: what this service's own successful rollbacks at this level took
 * (their median), not a share of the RTO; the RTO is the deadline.
 */
export function confirmEstimate(lines: readonly string[], level: number, rtoMinutes: number): string {
  const took = lines
    .map(parseHistoryLine)
    .filter((e): e is HistoryEntry => e !== undefined && e.level === level && e.status === 'success')
    .map(e => e.durationSeconds)
    .sort((a, b) => a - b)
  if (!took.length)
    return `Estimated time: no Level ${level} rollback measured here yet — deadline ${rtoMinutes} min (the RTO)`
  const median = took[Math.floor((took.length - 1) / 2)]!
  const fmt = (s: number): string => (s < 90 ? `${Math.round(s)} s` : `${Math.round(s / 60)} min`)
  return (
    `Estimated time: about ${fmt(median)} (the median of ${took.length} measured Level ${level} rollback${took.length > 1 ? 's' : ''} ` +
    `here, longest ${fmt(took[took.length - 1]!)}) — deadline ${rtoMinutes} min (the RTO)`
  )
}

/** The line under a failed or refused run's timeline: the reason once — not again when a step shows it. */
export function outcomeLine(record: RunRecord, message: string): string {
  const step = record.steps.find(s => s.status === 'failed' && s.detail.trim() === message.trim())
  return step ? `${record.status} at "${step.name}" (its reason above)` : `${record.status}: ${message}`
}
