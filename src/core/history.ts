import type { RunRecord } from './run-record'
import { sanitizeLine } from './sanitize'

/**
 * The runbook's rollback history line:
 * [YYYY-MM-DD HH:MM:SS] LEVEL=1 FROM=v2.5.0 TO=v2.4.9 DURATION=245 STATUS=success REASON="..."
 * Times are UTC. STATUS is one word: success, failed, or refused (nothing was changed); the runbook's format allows
 * any word, so others are kept as they are.
 */
export interface HistoryEntry {
  at: Date
  level: number
  from: string
  to: string
  durationSeconds: number
  status: string
  reason: string
}

const LINE =
  /^\[(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})\] LEVEL=(\d) FROM=(\S+) TO=(\S+) DURATION=(\d+) STATUS=([A-Za-z_-]+) REASON="((?:[^"\\]|\\.)*)"$/

function clean(value: string): string {
  return sanitizeLine(value).replace(/\s+/g, '_') || 'unknown'
}

/**
 * One line, whatever the reason holds: control characters, escapes and every kind of line break are stripped or
 * flattened (a reason cannot fake a second entry or drive a terminal), quotes and backslashes escaped.
 */
export function formatHistoryLine(e: HistoryEntry): string {
  const iso = e.at.toISOString()
  const reason = sanitizeLine(e.reason).replace(/\\/g, '\\\\').replace(/"/g, '\\"')
  const status = /^[A-Za-z_-]+$/.test(e.status) ? e.status : 'unknown'
  return (
    `[${iso.slice(0, 10)} ${iso.slice(11, 19)}] LEVEL=${e.level} FROM=${clean(e.from)} TO=${clean(e.to)} ` +
    `DURATION=${Math.round(e.durationSeconds)} STATUS=${status} REASON="${reason}"`
  )
}

export function parseHistoryLine(line: string): HistoryEntry | undefined {
  const m = LINE.exec(line.trim())
  if (!m) return undefined
  const [, date, time, level, from, to, duration, status, reason] = m as unknown as string[]
  return {
    at: new Date(`${date}T${time}Z`),
    level: Number(level),
    from: from!,
    to: to!,
    durationSeconds: Number(duration),
    status: status!,
    reason: sanitizeLine(reason!.replace(/\\(.)/g, '$1'))
  }
}

/** The history entry for a finished rollback run, or undefined for runs that are not rollbacks. */
export function historyEntryFor(record: RunRecord): HistoryEntry | undefined {
  if (record.operation !== 'rollback' || record.dryRun || record.level === undefined) return undefined
  let reason = record.reason
  if (record.status !== 'success' && record.error)
    reason += ` — ${record.status}: ${record.error.split('\n')[0]}`
  if (record.dataLoss) reason += ` — data-loss window ${record.dataLoss.windowSeconds}s`
  return {
    at: new Date(record.endedAt ?? record.startedAt),
    level: record.level,
    from: record.from ?? 'unknown',
    to: record.to ?? 'unknown',
    durationSeconds: (record.durationMs ?? 0) / 1000,
    status: record.status === 'success' ? 'success' : record.status === 'refused' ? 'refused' : 'failed',
    reason
  }
}

export interface HistoryReport {
  /** Every entry, refusals included. */
  total: number
  byLevel: Record<string, number>
  /** Entries by STATUS word. */
  byStatus: Record<string, number>
  /** Refused runs: nothing was changed. */
  refused: number
  /** Runs that started changing things (every status but refused): what the success rate is taken over. */
  attempted: number
  /** Mean duration of the attempted runs. */
  meanDurationSeconds: number
  /** Successes among the attempted runs; null when there were none (no rate, rather than "0 %"). */
  successRatePercent: number | null
  unparsedLines: number
}

/** The runbook's report: count by level, mean duration, success rate (of the runs that changed something). */
export function historyReport(lines: readonly string[]): HistoryReport {
  const entries = lines.filter(l => l.trim()).map(parseHistoryLine)
  const ok = entries.filter((e): e is HistoryEntry => e !== undefined)
  const byLevel: Record<string, number> = {}
  const byStatus: Record<string, number> = {}
  for (const e of ok) {
    byLevel[`LEVEL=${e.level}`] = (byLevel[`LEVEL=${e.level}`] ?? 0) + 1
    byStatus[e.status] = (byStatus[e.status] ?? 0) + 1
  }
  const attempted = ok.filter(e => e.status !== 'refused')
  return {
    total: ok.length,
    byLevel,
    byStatus,
    refused: ok.length - attempted.length,
    attempted: attempted.length,
    meanDurationSeconds: attempted.length
      ? attempted.reduce((s, e) => s + e.durationSeconds, 0) / attempted.length
      : 0,
    successRatePercent: attempted.length
      ? (attempted.filter(e => e.status === 'success').length * 100) / attempted.length
      : null,
    unparsedLines: entries.length - ok.length
  }
}

/** The report as `backout history --report` prints it. */
export function historyReportText(r: HistoryReport): string {
  if (r.total === 0)
    return `No rollbacks recorded yet${r.unparsedLines ? ` (${r.unparsedLines} lines not in the runbook's format were skipped)` : ''}`
  return [
    `Rollbacks: ${r.total}${r.refused ? ` (${r.refused} refused, nothing changed)` : ''}`,
    ...Object.entries(r.byLevel).map(([k, v]) => `  ${v} ${k}`),
    ...(r.attempted
      ? [
          `Average: ${r.meanDurationSeconds.toFixed(1)} seconds`,
          `Success rate: ${r.successRatePercent!.toFixed(0)}% of ${r.attempted} that changed something`
        ]
      : ['Success rate: none — no rollback got as far as changing anything']),
    ...(r.unparsedLines ? [`(${r.unparsedLines} lines not in the runbook's format were skipped)`] : [])
  ].join('\n')
}

/** "13 minutes", "1 minute", "42 seconds", "under 1 second": never "1 minutes" for a sub-second run. */
function recoverTime(seconds: number): string {
  if (seconds < 1) return 'under 1 second'
  if (seconds < 60) {
    const s = Math.round(seconds)
    return `${s} second${s === 1 ? '' : 's'}`
  }
  const m = Math.round(seconds / 60)
  return `${m} minute${m === 1 ? '' : 's'}`
}

/** The VBRPG runbook's history table. */
export function historyMarkdown(lines: readonly string[]): string {
  const rows = lines
    .map(parseHistoryLine)
    .filter((e): e is HistoryEntry => e !== undefined)
    .map(e => {
      const cell = (s: string): string => sanitizeLine(s).replace(/[|\\`*_<>[\]]/g, c => `\\${c}`)
      return `| ${e.at.toISOString().slice(0, 10)} | ${cell(e.from)} | ${cell(e.reason)} | ${recoverTime(e.durationSeconds)} | Level ${e.level} → ${cell(e.to)}, ${e.status} |`
    })
  return [
    '| Date | Version Rolled Back | Reason | Time to Recover | Notes |',
    '|------|---------------------|--------|-----------------|-------|',
    ...rows
  ].join('\n')
}
