import type { RunRecord } from './run-record'
import { timelineMarkdown } from './timeline'

/** A mermaid gantt chart of the steps that ran, with their real start and end times. */
export function mermaidTimeline(record: RunRecord): string {
  const ran = record.steps.filter(s => s.startedAt && s.endedAt)
  if (!ran.length) return ''
  const title = `${record.operation}${record.level ? ` level ${record.level}` : ''} — ${record.service}`
  const lines = ran.map((s, i) => {
    const start = Date.parse(s.startedAt!)
    const end = Math.max(start + 1, Date.parse(s.endedAt!))
    const tag = s.status === 'failed' ? 'crit, ' : 'done, '
    return `    ${s.name.replace(/[:#;]/g, ' ')} (${((s.durationMs ?? 0) / 1000).toFixed(2)}s) :${tag}s${i}, ${start}, ${end}`
  })
  return [
    '```mermaid',
    'gantt',
    `    title ${title.replace(/[:#;]/g, ' ')}`,
    '    dateFormat x',
    '    axisFormat %M:%S',
    ...lines,
    '```'
  ].join('\n')
}

/** The job summary for a run: headline, facts, step table, timeline chart. */
export function runSummaryMarkdown(record: RunRecord): string {
  const icon = record.status === 'success' ? '✅' : record.status === 'planned' ? '📝' : '❌'
  const facts = [
    ['Service', `${record.service} (${record.environment})`],
    ['Status', record.status + (record.error ? ` — ${record.error.split('\n')[0]}` : '')],
    ...(record.level ? [['Level', String(record.level)]] : []),
    ...(record.from || record.to ? [['Versions', `${record.from ?? '?'} → ${record.to ?? '?'}`]] : []),
    [
      'Duration',
      `${((record.durationMs ?? 0) / 1000).toFixed(1)} s${record.rtoSeconds ? ` (RTO ${record.rtoSeconds / 60} min)` : ''}`
    ],
    ...(record.safetyBackupId ? [['Safety backup', record.safetyBackupId]] : []),
    ...(record.backupId ? [['Backup', record.backupId]] : []),
    ...(record.dataLoss
      ? [
          [
            'Data-loss window',
            `${record.dataLoss.windowSeconds} s (restored to ${record.dataLoss.restoredTo}; ${record.dataLoss.note})`
          ]
        ]
      : []),
    ['Reason', record.reason]
  ]
  return [
    `## ${icon} backout ${record.operation}${record.level ? ` level ${record.level}` : ''}: ${record.status}`,
    '',
    '| | |',
    '|---|---|',
    ...facts.map(([k, v]) => `| ${k} | ${String(v).replace(/\|/g, '\\|')} |`),
    '',
    timelineMarkdown(record),
    '',
    mermaidTimeline(record)
  ].join('\n')
}
