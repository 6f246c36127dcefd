import { formatHistoryLine, historyMarkdown, historyReport, parseHistoryLine } from '../../src/core/history'

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
