import { rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { MemoryLogger } from '../../src/core/logger'
import { loadConfig } from '../../src/drivers/config-file'
import { runCommand } from '../../src/drivers/exec'
import { isAlive, readPid } from '../../src/drivers/process'
import { stopCluster } from '../../src/drivers/postgres-cluster'
import { assess, listening, type AssessReport } from '../../src/engine/assess'
import { dryRunLevel } from '../../src/engine/recommend'
import { createService, targetReady, type Service } from '../../src/engine/service'
import { readSandboxState } from '../../src/sandbox/sandbox'
import { startSandbox, type TestSandbox } from '../support/cli'

/**
 * One test per row of the runbook's decision tree, on a real sandbox (nginx, PostgreSQL, blue v2.4.9 healthy and
 * green v2.5.0 live), green restarted with the sandbox app's --error-rate and --delay-ms flags. Every assess runs
 * with the config's defaults (3 rounds, no Prometheus: sampling through nginx); each asserts the verdict, the
 * recommendation, and that the recommended level's dry run passes on its own.
 */

jest.setTimeout(180_000)

let sb: TestSandbox
let service: Service
beforeAll(async () => {
  sb = await startSandbox()
  service = createService(loadConfig(sb.config), new MemoryLogger())
})
afterAll(async () => {
  await sb?.down()
})

/** Restarts green with the app's error-rate and delay flags. */
async function setGreen(errorRate: number, delayMs: number): Promise<void> {
  const p = service.config.targets.green.process!
  const flag = (name: string, value: number): void => {
    const i = p.command.indexOf(name)
    p.command[i + 1] = String(value)
  }
  flag('--error-rate', errorRate)
  flag('--delay-ms', delayMs)
  await service.runtime.stop('green', 5000)
  await service.runtime.start('green')
  for (let i = 0; i < 100 && !(await targetReady(service.config, 'green')).ready; i++)
    await new Promise(r => setTimeout(r, 100))
}

/** The recommendation's level, dry-run again on its own: it must pass. */
async function expectRunnable(r: AssessReport): Promise<void> {
  const rec = r.recommendation!
  expect(rec.commands.length).toBeGreaterThan(0)
  // As printed: a Level 3 after a database that will not start runs with the logged override.
  const override = rec.commands.some(c => c.includes('--allow-uncaptured-database'))
  if (rec.level !== null) expect((await dryRunLevel(service, rec.level, undefined, override)).ok).toBe(true)
}

const codes = (r: AssessReport): string[] => r.assessment.reasons.map(x => x.code)

test('error rate > 50 %: CRITICAL, roll back now with Level 1 (blue healthy, plan checked)', async () => {
  await setGreen(0.6, 5)
  const r = await assess(service)
  expect(r.measurements.errorRatePercent as number).toBeGreaterThan(50)
  expect(r.assessment.severity).toBe('CRITICAL')
  expect(r.assessment.act).toBe('now')
  expect(codes(r)).toContain('error_rate_critical')
  expect(r.recommendation).toMatchObject({
    action: 'rollback',
    level: 1,
    commands: ['backout rollback --level 1']
  })
  await expectRunnable(r)
})

test('error rate > 10 %: HIGH, Level 1', async () => {
  await setGreen(0.3, 5)
  const r = await assess(service)
  expect(r.assessment.severity).toBe('HIGH')
  expect(r.assessment.shouldRollback).toBe(true)
  expect(codes(r)[0]).toBe('error_rate_high')
  expect(r.recommendation).toMatchObject({ action: 'rollback', level: 1 })
  await expectRunnable(r)
})

test('error rate 5–10 % is MEDIUM with the default settings, its 95 % interval inside the tier', async () => {
  await setGreen(0.075, 5)
  const r = await assess(service)
  // 427 requests over 3 rounds (sized from the 5 %/10 % thresholds), not 3 × 40 with the second-highest round.
  expect(r.measurements.requestCount).toBeGreaterThanOrEqual(427)
  expect(r.measurements.errorRatePercent as number).toBeGreaterThan(5)
  expect(r.measurements.errorRatePercent as number).toBeLessThanOrEqual(10)
  const ci = r.measurements.errorRateInterval!
  expect(ci.high - ci.low).toBeLessThan(5.5)
  expect(r.assessment.severity).toBe('MEDIUM')
  expect(r.assessment.act).toBe('in 15 min')
  expect(r.assessment.reasons.find(x => x.code === 'error_rate_medium')!.message).toMatch(
    /error rate [\d.]+ % \(95 % CI [\d.]+–[\d.]+ %\) > 5 %/
  )
  expect(r.trafficSource).toMatch(/sampled through nginx \S+ \(no Prometheus configured\)/)
  expect(r.recommendation).toMatchObject({ action: 'rollback', level: 1 })
  await expectRunnable(r)
})

test('error rate < 5 %: LOW, monitor — no rollback recommended', async () => {
  await setGreen(0.02, 5)
  const r = await assess(service)
  expect(r.measurements.errorRatePercent as number).toBeLessThan(5)
  expect(r.assessment.severity).toBe('LOW')
  expect(r.assessment.shouldRollback).toBe(false)
  expect(r.recommendation).toMatchObject({ action: 'monitor', level: null, checked: [] })
})

test('p95 > 5 s without Prometheus: HIGH (the request deadline is above the threshold)', async () => {
  await setGreen(0, 6000)
  const started = performance.now()
  const r = await assess(service)
  const seconds = (performance.now() - started) / 1000
  expect(r.measurements.p95Seconds as number).toBeGreaterThan(5)
  expect(r.measurements.errorRatePercent).toBe(0)
  expect(r.assessment.severity).toBe('HIGH')
  expect(codes(r)[0]).toBe('response_time_high')
  expect(r.recommendation).toMatchObject({ action: 'rollback', level: 1 })
  await expectRunnable(r)
  expect(seconds).toBeLessThan(60)
})

test('p95 2–5 s: MEDIUM', async () => {
  await setGreen(0, 3000)
  const r = await assess(service)
  expect(r.measurements.p95Seconds as number).toBeGreaterThan(2)
  expect(r.measurements.p95Seconds as number).toBeLessThan(5)
  expect(r.assessment.severity).toBe('MEDIUM')
  expect(codes(r)[0]).toBe('response_time_medium')
  expect(r.recommendation).toMatchObject({ action: 'rollback', level: 1 })
  await expectRunnable(r)
})

test('data corruption: CRITICAL, Level 3 — its plan checked by a dry run', async () => {
  await setGreen(0, 5)
  const marker = path.join(sb.dir, 'data/godot/corruption_detected')
  writeFileSync(marker, 'x')
  try {
    const r = await assess(service)
    expect(r.assessment.severity).toBe('CRITICAL')
    expect(codes(r)[0]).toBe('data_corruption')
    expect(r.recommendation).toMatchObject({ action: 'rollback', level: 3 })
    expect(r.recommendation!.checked).toEqual([expect.objectContaining({ level: 3, ok: true })])
    await expectRunnable(r)
  } finally {
    rmSync(marker)
  }
})

test('database down: CRITICAL; start the database (the command works), Level 3 as the checked fallback', async () => {
  const state = readSandboxState(sb.dir)!
  await stopCluster({ dataDir: state.pgDataDir!, binDir: state.pgBinDir! })
  const r = await assess(service)
  expect(r.assessment.severity).toBe('CRITICAL')
  expect(codes(r)).toContain('database_failure')
  const rec = r.recommendation!
  expect(rec.action).toBe('start-database')
  // Level 2's preparation needs the database; the first level whose plan passes is offered.
  expect(rec.checked.find(c => c.level === 2)).toMatchObject({ ok: false })
  expect(rec.level).toBe(3)
  expect(rec.commands[1]).toMatch(/--level 3 --allow-uncaptured-database/)
  await expectRunnable(r)
  // The first command is the one that brings it back.
  const start = await runCommand(['bash', '-c', rec.commands[0]!])
  expect(start.code).toBe(0)
  const after = await assess(service, { rounds: 1, failureLimit: 1, recommend: false })
  expect(after.measurements.databaseFailure).toBe(false)
})

test('service down (green killed, blue healthy): CRITICAL, Level 1', async () => {
  const green = readPid(path.join(sb.dir, 'run/green.pid'))!
  process.kill(green, 'SIGKILL')
  for (let i = 0; i < 200 && isAlive(green); i++) await new Promise(r => setTimeout(r, 10))
  const r = await assess(service)
  expect(r.measurements.serviceUp).toBe(false)
  expect(r.assessment.severity).toBe('CRITICAL')
  expect(r.recommendation).toMatchObject({ action: 'rollback', level: 1 })
  await expectRunnable(r)
})

test('nginx down, blue healthy: start nginx (the command works), not a rollback', async () => {
  await setGreen(0, 5)
  const nginxPid = readPid(path.join(sb.dir, 'run/nginx.pid'))!
  process.kill(nginxPid, 'SIGQUIT')
  const address = new URL(sb.nginxUrl).host
  for (let i = 0; i < 100 && (await listening(address)); i++) await new Promise(r => setTimeout(r, 50))
  const r = await assess(service, { rounds: 1, failureLimit: 1 })
  expect(r.assessment.severity).toBe('CRITICAL')
  const rec = r.recommendation!
  expect(rec.action).toBe('start-nginx')
  expect(rec.commands[0]).toMatch(/^nginx -p \S+ -c \S+nginx\.conf$/)
  expect((await runCommand(['bash', '-c', rec.commands[0]!])).code).toBe(0)
  for (let i = 0; i < 100 && !(await listening(address)); i++) await new Promise(r => setTimeout(r, 50))
  const after = await assess(service, { rounds: 1, failureLimit: 1, recommend: false })
  expect(after.measurements.serviceUp).toBe(true)
})
