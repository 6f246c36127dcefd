import {
  formatHistoryLine,
  historyEntryFor,
  historyMarkdown,
  historyReport,
  historyReportText,
  parseHistoryLine
} from '../../src/core/history'
import { LINE_BREAKS } from '../../src/core/sanitize'

const RUNBOOK_EXAMPLES = [
  '[2025-12-02 15:30:45] LEVEL=1 FROM=v2.5.0 TO=v2.4.9 DURATION=245 STATUS=success REASON="Application crash due to null pointer"',
  '[2025-12-01 14:20:15] LEVEL=2 FROM=v2.4.8 TO=v2.4.7 DURATION=780 STATUS=success REASON="Database migration failure"'
]

test('parses and re-formats the runbook example lines exactly', () => {
  for (const line of RUNBOOK_EXAMPLES) expect(formatHistoryLine(parseHistoryLine(line)!)).toBe(line)
})

test('quotes in a reason survive a round trip and newlines are flattened', () => {
  const line = formatHistoryLine({
    at: new Date('2026-01-02T03:04:05Z'),
    level: 3,
    from: 'v2',
    to: 'v1',
    durationSeconds: 12.4,
    status: 'failed',
    reason: 'said "no"\nthen left'
  })
  expect(line).toBe(
    '[2026-01-02 03:04:05] LEVEL=3 FROM=v2 TO=v1 DURATION=12 STATUS=failed REASON="said \\"no\\" then left"'
  )
  expect(parseHistoryLine(line)!.reason).toBe('said "no" then left')
})

test('the report counts by level, averages the duration and gives the success rate', () => {
  const failed = '[2025-12-03 10:00:00] LEVEL=1 FROM=v3 TO=v2 DURATION=15 STATUS=failed REASON="x"'
  const r = historyReport([...RUNBOOK_EXAMPLES, failed, 'garbage'])
  expect(r.total).toBe(3)
  expect(r.byLevel).toEqual({ 'LEVEL=1': 2, 'LEVEL=2': 1 })
  expect(r.meanDurationSeconds).toBeCloseTo((245 + 780 + 15) / 3)
  expect(r.successRatePercent).toBeCloseTo(66.67, 1)
  expect(r.unparsedLines).toBe(1)
})

test('markdown renders the VBRPG history table', () => {
  const md = historyMarkdown(RUNBOOK_EXAMPLES)
  expect(md.split('\n')[0]).toBe('| Date | Version Rolled Back | Reason | Time to Recover | Notes |')
  expect(md).toContain('| 2025-12-01 | v2.4.8 | Database migration failure | 13 minutes |')
})

test('refusals are recorded as refused and left out of the success rate (#12.8)', () => {
  const refused =
    '[2025-12-04 10:00:00] LEVEL=2 FROM=v3 TO=unknown DURATION=1 STATUS=refused REASON="no backup"'
  const r = historyReport([...RUNBOOK_EXAMPLES, refused, refused])
  expect(r.total).toBe(4)
  expect(r.refused).toBe(2)
  expect(r.attempted).toBe(2)
  expect(r.successRatePercent).toBe(100)
  expect(r.meanDurationSeconds).toBeCloseTo((245 + 780) / 2)
  expect(historyReportText(r)).toContain('Success rate: 100% of 2 that changed something')
  expect(historyReportText(r)).toContain('Rollbacks: 4 (2 refused, nothing changed)')
  const onlyRefused = historyReport([refused])
  expect(onlyRefused.successRatePercent).toBeNull()
  expect(historyReportText(onlyRefused)).toContain('no rollback got as far as changing anything')
  expect(historyReportText(onlyRefused)).not.toMatch(/0 ?%/)
  expect(historyReportText(historyReport([]))).toBe('No rollbacks recorded yet')
})

test('a refused run record becomes STATUS=refused', () => {
  const entry = historyEntryFor({
    schema: 'backout.run/v1',
    id: '20260101-000000-abc',
    service: 's',
    environment: 'production',
    operation: 'rollback',
    level: 2,
    reason: 'r',
    status: 'refused',
    dryRun: false,
    startedAt: '2026-01-01T00:00:00Z',
    endedAt: '2026-01-01T00:00:01Z',
    durationMs: 1000,
    rtoSeconds: 900,
    steps: [],
    error: 'no intact snapshot'
  })
  expect(formatHistoryLine(entry!)).toMatch(/STATUS=refused REASON="r — refused: no intact snapshot"$/)
})

test('a reason cannot fake a second entry, a status or a terminal escape (#18.9)', () => {
  const fake = '[2026-01-01 00:00:00] LEVEL=1 FROM=a TO=b DURATION=1 STATUS=success REASON="y'
  for (const sep of ['\n', '\r', '\u2028', '\u2029', '\v', '\f', '\u0085', '\r\n', '\x1b[2K\r']) {
    const line = formatHistoryLine({
      at: new Date('2026-01-02T03:04:05Z'),
      level: 2,
      from: 'v2',
      to: 'v1',
      durationSeconds: 3,
      status: 'failed',
      reason: `x" STATUS=success${sep}${fake}\x1b]0;title\x07\x00`
    })
    expect(line.split(LINE_BREAKS)).toHaveLength(1)
    expect(line).not.toMatch(/[\x00-\x1f\x7f-\x9f\u2028\u2029]/)
    const r = historyReport(line.split(LINE_BREAKS))
    expect(r.total).toBe(1)
    expect(r.byStatus).toEqual({ failed: 1 })
  }
})

test('markdown says seconds for a run under a minute, never "1 minutes"', () => {
  const line = (d: string): string =>
    `[2025-12-03 10:00:00] LEVEL=1 FROM=v2 TO=v1 DURATION=${d} STATUS=success REASON="x"`
  const md = historyMarkdown([line('0'), line('1'), line('42'), line('60')])
  expect(md).toContain('| under 1 second |')
  expect(md).toContain('| 1 second |')
  expect(md).toContain('| 42 seconds |')
  expect(md).toContain('| 1 minute |')
  expect(md).not.toContain('1 minutes')
})
