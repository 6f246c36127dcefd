import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { stringify } from 'yaml'
import type { RunRecord } from '../../src/core/run-record'
import {
  confirmEstimate,
  historyMetrics,
  historyPrometheus,
  outcomeLine
} from '../../src/core/history-metrics'
import { runCommand } from '../../src/drivers/exec'
import { runCli } from '../support/cli'
import { minimalConfig } from '../support/minimal-config'

const LINES = [
  '[2026-11-01 10:00:00] LEVEL=1 FROM=v2.5.0 TO=v2.4.9 DURATION=40 STATUS=success REASON="error rate 30%"',
  '[2026-11-05 10:00:00] LEVEL=2 FROM=v2.6.0 TO=v2.5.1 DURATION=300 STATUS=failed REASON="x — failed: migration"',
  '[2026-11-05 10:10:00] LEVEL=3 FROM=v2.6.0 TO=v2.5.1 DURATION=900 STATUS=success REASON="x — data-loss window 120s"',
  'not a history line'
]

test('metrics by level and status, time to restore, data-loss window, change failure rate', () => {
  const m = historyMetrics(LINES, { service: 'spacetime', environment: 'production' }, 12)
  expect(m.total).toBe(3)
  expect(m.byLevelStatus).toEqual([
    { level: 1, status: 'success', count: 1, durationSecondsSum: 40 },
    { level: 2, status: 'failed', count: 1, durationSecondsSum: 300 },
    { level: 3, status: 'success', count: 1, durationSecondsSum: 900 }
  ])
  expect(m.timeToRestoreSeconds).toEqual({ mean: 470, median: 40, max: 900 })
  expect(m.dataLossWindowSeconds).toEqual({ last: 120, max: 120 })
  expect(m.changeFailureRatePercent).toBe(25)
  expect(m.lastRollbackAt).toBe('2026-11-05T10:10:00.000Z')
  expect(m.unparsedLines).toBe(1)
})

test('history --format prometheus is a textfile promtool accepts; --format json the same figures', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'backout-metrics-'))
  try {
    const config = path.join(dir, 'backout.yml')
    writeFileSync(path.join(dir, 'history.log'), LINES.join('\n') + '\n')
    writeFileSync(
      config,
      stringify({ ...minimalConfig, state: { dir: 'state' }, history: { log: 'history.log' } })
    )
    const prom = await runCli([
      '--config',
      config,
      'history',
      '--format',
      'prometheus',
      '--deployments',
      '12'
    ])
    expect(prom.code).toBe(0)
    expect(prom.stdout).toContain(
      'backout_rollbacks_total{service="spacetime",environment="production",level="2",status="failed"} 1'
    )
    expect(prom.stdout).toContain(
      'backout_change_failure_rate_percent{service="spacetime",environment="production"} 25'
    )
    const check = await runCommand(['promtool', 'check', 'metrics'], { input: prom.stdout })
    expect({ code: check.code, out: check.stdout + check.stderr }).toEqual({ code: 0, out: '' })
    const json = await runCli(['--config', config, 'history', '--format', 'json'])
    expect(JSON.parse(json.stdout)).toMatchObject({ total: 3, timeToRestoreSeconds: { max: 900 } })
    expect(historyPrometheus(historyMetrics([], { service: 's', environment: 'e' }))).toContain(
      '# TYPE backout_rollbacks_total counter'
    )
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test("the confirmation's estimate comes from this service's measured rollbacks, the RTO is the deadline", () => {
  const line = (level: number, s: number, status = 'success'): string =>
    `[2026-11-01 10:00:00] LEVEL=${level} FROM=a TO=b DURATION=${s} STATUS=${status} REASON="r"`
  expect(
    confirmEstimate([line(1, 40), line(1, 20), line(1, 900, 'failed'), line(2, 600), line(1, 30)], 1, 5)
  ).toBe(
    'Estimated time: about 30 s (the median of 3 measured Level 1 rollbacks here, longest 40 s) — deadline 5 min (the RTO)'
  )
  expect(confirmEstimate([line(2, 600)], 2, 15)).toBe(
    'Estimated time: about 10 min (the median of 1 measured Level 2 rollback here, longest 10 min) — deadline 15 min (the RTO)'
  )
  expect(confirmEstimate([], 3, 30)).toBe(
    'Estimated time: no Level 3 rollback measured here yet — deadline 30 min (the RTO)'
  )
})

test('a refusal is printed once: the line under the timeline points at the step that shows it', () => {
  const record = {
    status: 'refused',
    steps: [
      { name: 'Assess situation', status: 'ok', detail: 'nginx routes to blue' },
      {
        name: 'Verify previous environment',
        status: 'failed',
        detail: 'green is not healthy — escalate to Level 2'
      }
    ]
  } as unknown as RunRecord
  expect(outcomeLine(record, 'green is not healthy — escalate to Level 2')).toBe(
    'refused at "Verify previous environment" (its reason above)'
  )
  expect(outcomeLine(record, 'lock held')).toBe('refused: lock held')
})
