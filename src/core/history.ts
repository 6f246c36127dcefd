import type { RunRecord } from './run-record'

/**
 * The runbook's rollback history line:
 * [YYYY-MM-DD HH:MM:SS] LEVEL=1 FROM=v2.5.0 TO=v2.4.9 DURATION=245 STATUS=success REASON="..."
 * Times are UTC.
 */
export interface HistoryEntry {
  at: Date
  level: number
  from: string
  to: string
  durationSeconds: number
  status: 'success' | 'failed'
  reason: string
}

const LINE =
  /^\[(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})\] LEVEL=(\d) FROM=(\S+) TO=(\S+) DURATION=(\d+) STATUS=(success|failed) REASON="((?:[^"\\]|\\.)*)"/

function clean(value: string): string {
  return value.replace(/\s+/g, '_') || 'unknown'
}

export function formatHistoryLine(e: HistoryEntry): string {
  const iso = e.at.toISOString()
  const reason = e.reason
    .replace(/[\r\n]+/g, ' ')
    .replace(/\\/g, '\\\\')
    .replace(/"/g, '\\"')
  return (
    `[${iso.slice(0, 10)} ${iso.slice(11, 19)}] LEVEL=${e.level} FROM=${clean(e.from)} TO=${clean(e.to)} ` +
    `DURATION=${Math.round(e.durationSeconds)} STATUS=${e.status} REASON="${reason}"`
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
    status: status as 'success' | 'failed',
    reason: reason!.replace(/\\(.)/g, '$1')
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
    status: record.status === 'success' ? 'success' : 'failed',
    reason
  }
}

export interface HistoryReport {
  total: number
  byLevel: Record<string, number>
  meanDurationSeconds: number
  successRatePercent: number
  unparsedLines: number
}

/** The runbook's report: count by level, mean duration, success rate. */
export function historyReport(lines: readonly string[]): HistoryReport {
  const entries = lines.filter(l => l.trim()).map(parseHistoryLine)
  const ok = entries.filter((e): e is HistoryEntry => e !== undefined)
  const byLevel: Record<string, number> = {}
  for (const e of ok) byLevel[`LEVEL=${e.level}`] = (byLevel[`LEVEL=${e.level}`] ?? 0) + 1
  const total = ok.length
  return {
    total,
    byLevel,
    meanDurationSeconds: total ? ok.reduce((s, e) => s + e.durationSeconds, 0) / total : 0,
    successRatePercent: total ? (ok.filter(e => e.status === 'success').length * 100) / total : 0,
    unparsedLines: entries.length - total
  }
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
      const cell = (s: string): string => s.replace(/\|/g, '\\|')
      return `| ${e.at.toISOString().slice(0, 10)} | ${cell(e.from)} | ${cell(e.reason)} | ${recoverTime(e.durationSeconds)} | Level ${e.level} → ${cell(e.to)}, ${e.status} |`
    })
  return [
    '| Date | Version Rolled Back | Reason | Time to Recover | Notes |',
    '|------|---------------------|--------|-----------------|-------|',
    ...rows
  ].join('\n')
}
