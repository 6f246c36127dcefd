import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { stringify } from 'yaml'
import { historyMetrics, historyPrometheus } from '../../src/core/history-metrics'
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
