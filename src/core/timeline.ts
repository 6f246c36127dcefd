import type { RunRecord } from './run-record'

function seconds(ms: number | undefined): string {
  return ms === undefined ? '' : `${(ms / 1000).toFixed(2)}s`
}

const MARK: Record<string, string> = { ok: '✓', failed: '✗', skipped: '·', planned: '○' }

/** The run's steps as aligned text lines: mark, name, measured time, deadline, detail. */
export function timelineText(record: RunRecord): string {
  const width = Math.max(...record.steps.map(s => s.name.length), 4)
  const lines = record.steps.map(s => {
    const took = s.status === 'planned' ? '(plan)' : seconds(s.durationMs)
    const deadline = s.deadlineSeconds !== undefined ? `/${s.deadlineSeconds}s` : ''
    return `${MARK[s.status] ?? '?'} ${s.name.padEnd(width)}  ${(took + deadline).padStart(12)}  ${s.detail}`
  })
  const total = record.durationMs !== undefined ? seconds(record.durationMs) : ''
  const rto = record.rtoSeconds ? ` (RTO ${record.rtoSeconds / 60} min)` : ''
  const head =
    `${record.operation}${record.level ? ` level ${record.level}` : ''} ${record.from ?? ''}` +
    `${record.to ? ` → ${record.to}` : ''}: ${record.status}${total ? ` in ${total}` : ''}${rto}`
  return [head.replace(/\s+/g, ' '), ...lines].join('\n')
}

/** The timeline as a markdown table, for the job summary. */
export function timelineMarkdown(record: RunRecord): string {
  const rows = record.steps.map(
    s =>
      `| ${MARK[s.status] ?? ''} ${s.name} | ${s.status} | ${seconds(s.durationMs)} | ${s.deadlineSeconds ?? ''}s | ${s.detail.replace(/\|/g, '\\|').replace(/\n/g, ' ')} |`
  )
  return ['| Step | Status | Took | Deadline | Detail |', '|---|---|---|---|---|', ...rows].join('\n')
}
