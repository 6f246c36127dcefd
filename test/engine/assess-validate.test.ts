import { appendFileSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { MemoryLogger } from '../../src/core/logger'
import { loadConfig } from '../../src/drivers/config-file'
import { pgQuery } from '../../src/drivers/database'
import { readPid } from '../../src/drivers/process'
import { assess } from '../../src/engine/assess'
import { rollback } from '../../src/engine/rollback'
import { createService, type Service } from '../../src/engine/service'
import { validate } from '../../src/engine/validate'
import { startSandbox, type TestSandbox } from '../support/cli'
import { freePort } from '../support/ports'

jest.setTimeout(60_000)

let sb: TestSandbox
let service: Service
beforeEach(async () => {
  sb = await startSandbox()
  service = createService(loadConfig(sb.config), new MemoryLogger())
})
afterEach(async () => {
  await sb.down()
})

const statusOf = async (name: string): Promise<string | undefined> =>
  (await validate(service, { thorough: true, durationSeconds: 0 })).checks.find(c => c.name === name)?.status

test('the bad green deployment is HIGH (error rate > 10 %) with Level 1 recommended; after Level 1, validate passes', async () => {
  const before = await assess(service, { samples: 40 })
  expect(before.assessment.severity).toBe('HIGH')
  expect(before.assessment.shouldRollback).toBe(true)
  expect(before.assessment.recommendedLevel).toBe(1)
  expect(before.assessment.reasons[0]!.code).toMatch(/error_rate/)

  // green fails requests: quick validation fails on the error rate, thorough monitoring on a sustained breach
  const bad = await validate(service, { thorough: true, durationSeconds: 20, intervalSeconds: 1 })
  expect(bad.passed).toBe(false)
  const monitoring = bad.checks.find(c => c.name === 'monitoring')!
  expect(monitoring.status).toBe('fail')
  expect(monitoring.measured).toMatch(/sustained breach at \d+ s \(sample 2\)/)
  expect(bad.checks.find(c => c.name === 'error rate')!.status).toBe('fail')
  const { error } = await rollback(service, {
    level: 1,
    reason: 't',
    dryRun: false,
    confirm: () => Promise.resolve(true)
  })
  expect(error).toBeUndefined()

  const after = await assess(service, { samples: 40 })
  expect(after.assessment.severity).toBe('LOW')
  expect(after.assessment.shouldRollback).toBe(false)
  const report = await validate(service, { thorough: true, durationSeconds: 3, intervalSeconds: 1 })
  expect(report.checks.filter(c => c.status === 'fail')).toEqual([])
  expect(report.passed).toBe(true)
  const byName = new Map(report.checks.map(c => [c.name, c]))
  for (const name of ['smoke tests', 'network ports', 'resource usage', 'recent log errors', 'monitoring'])
    expect([name, byName.get(name)!.status]).toEqual([name, 'pass'])
  expect(byName.get('resource usage')!.measured).toMatch(/blue \(pid \d+\): RSS [\d.]+ MB, CPU [\d.]+%/)
  expect(byName.get('debug ports')!.status).toBe('skip') // none configured

  // Each added check fails on its own breakage.
  service.config.validate.maxRssMB = 1
  expect(await statusOf('resource usage')).toBe('fail')
  service.config.validate.maxRssMB = 1024
  const closed = `127.0.0.1:${await freePort()}`
  service.config.validate.debugPorts = [closed]
  expect(await statusOf('debug ports')).toBe('fail')
  service.config.validate.debugPorts = [service.config.targets.blue.upstream]
  expect(await statusOf('debug ports')).toBe('pass')
  appendFileSync(path.join(sb.dir, 'logs/blue.log'), 'ERROR lost connection to the database\n'.repeat(5))
  expect(await statusOf('recent log errors')).toBe('pass') // 5 tolerated: isolated errors are LOW
  appendFileSync(path.join(sb.dir, 'logs/blue.log'), 'ERROR lost connection to the database\n')
  expect(await statusOf('recent log errors')).toBe('fail')
})

test('a corruption marker is CRITICAL, Level 3, and fails validation', async () => {
  writeFileSync(path.join(sb.dir, 'data/godot/corruption_detected'), 'x')
  const r = await assess(service, { samples: 20, rounds: 1, failureLimit: 1 })
  expect(r.assessment.severity).toBe('CRITICAL')
  expect(r.assessment.recommendedLevel).toBe(3)
  expect(await statusOf('no corruption marker')).toBe('fail')
  rmSync(path.join(sb.dir, 'data/godot/corruption_detected'))
  expect(await statusOf('no corruption marker')).toBe('pass')
})

test('a service that is down is CRITICAL; validate fails on HTTP and the live target', async () => {
  process.kill(readPid(path.join(sb.dir, 'run/green.pid'))!, 'SIGKILL')
  const r = await assess(service, { samples: 20, rounds: 1, failureLimit: 1 })
  expect(r.assessment.severity).toBe('CRITICAL')
  expect(r.assessment.shouldRollback).toBe(true)
  expect(await statusOf('live target running')).toBe('fail')
  expect(await statusOf('network ports')).toBe('fail')
  expect(await statusOf('resource usage')).toBe('fail')
  expect(await statusOf('HTTP /status')).toBe('fail')
  expect(await statusOf('smoke tests')).toBe('fail')
})

test('a dropped critical table fails the data checks', async () => {
  const db = service.config.database!
  if (db.kind !== 'postgres') return
  await pgQuery(db.url, 'DROP TABLE game_state')
  expect(await statusOf('critical data')).toBe('fail')
  expect(await statusOf('database integrity')).toBe('fail')
})
