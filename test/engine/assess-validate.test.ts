import { rmSync, writeFileSync } from 'node:fs'
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
  (await validate(service, { thorough: true })).checks.find(c => c.name === name)?.status

test('the bad green deployment is HIGH (error rate > 10 %) with Level 1 recommended; after Level 1, validate passes', async () => {
  const before = await assess(service, { samples: 60 })
  expect(before.assessment.severity).toBe('HIGH')
  expect(before.assessment.shouldRollback).toBe(true)
  expect(before.assessment.recommendedLevel).toBe(1)
  expect(before.assessment.reasons[0]!.code).toMatch(/error_rate/)

  expect((await validate(service, { thorough: false })).passed).toBe(false) // green fails requests
  const { error } = await rollback(service, { level: 1, reason: 't', dryRun: false, confirm: () => Promise.resolve(true) })
  expect(error).toBeUndefined()

  const after = await assess(service, { samples: 60 })
  expect(after.assessment.severity).toBe('LOW')
  expect(after.assessment.shouldRollback).toBe(false)
  const report = await validate(service, { thorough: true })
  expect(report.checks.filter(c => c.status === 'fail')).toEqual([])
  expect(report.checks.find(c => c.name === 'smoke tests')!.status).toBe('pass')
})

test('a corruption marker is CRITICAL, Level 3, and fails validation', async () => {
  writeFileSync(path.join(sb.dir, 'data/godot/corruption_detected'), 'x')
  const r = await assess(service, { samples: 30 })
  expect(r.assessment.severity).toBe('CRITICAL')
  expect(r.assessment.recommendedLevel).toBe(3)
  expect(await statusOf('no corruption marker')).toBe('fail')
  rmSync(path.join(sb.dir, 'data/godot/corruption_detected'))
  expect(await statusOf('no corruption marker')).toBe('pass')
})

test('a service that is down is CRITICAL; validate fails on HTTP and the live target', async () => {
  process.kill(readPid(path.join(sb.dir, 'run/green.pid'))!, 'SIGKILL')
  const r = await assess(service, { samples: 30 })
  expect(r.assessment.severity).toBe('CRITICAL')
  expect(r.assessment.shouldRollback).toBe(true)
  expect(await statusOf('live target running')).toBe('fail')
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
