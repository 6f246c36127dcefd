import type { RunRecord } from '../../src/core/run-record'
import { runAction } from '../support/action'
import { startSandbox, whoServes, type TestSandbox } from '../support/cli'

/** assess, snapshot, validate and the Level 2/3 actions, run as the runner runs them, on a real sandbox. */
let sb: TestSandbox
beforeAll(async () => {
  sb = await startSandbox()
})
afterAll(async () => {
  await sb.down()
})

test('assess: the bad green deployment calls for a rollback, with its reasons', async () => {
  const run = await runAction('assess', { config: sb.config, samples: '40' })
  expect(run.code).toBe(0)
  expect(run.outputs).toMatchObject({ decision: 'rollback', should_rollback: 'true', level: '1' })
  expect(['HIGH', 'CRITICAL']).toContain(run.outputs.severity)
  const reasons = JSON.parse(run.outputs.reasons!) as { code: string; measured: unknown }[]
  expect(reasons.some(r => /error_rate/.test(r.code))).toBe(true)
  expect(run.summary).toContain('backout assess')
})

test('assess: a bad input is refused with the key named', async () => {
  const run = await runAction('assess', { config: sb.config, samples: 'lots' })
  expect(run.code).toBe(1)
  expect(run.outputs).toMatchObject({ decision: 'refused', reason_code: 'bad_input' })
  expect(run.stdout).toContain('input samples')
})

test('snapshot: a verified backup id', async () => {
  const run = await runAction('snapshot', { config: sb.config })
  expect(run.code).toBe(0)
  expect(run.outputs.backup_id).toMatch(/^\d{8}-\d{6}$/)
})

test('rollback-level-2 and -3 dry runs plan and change nothing; a bad target is refused', async () => {
  for (const name of ['rollback-level-2', 'rollback-level-3']) {
    const run = await runAction(name, { config: sb.config, target: '', 'dry-run': 'true' })
    expect(run.code).toBe(0)
    const record = run.full!.record as RunRecord
    expect(record.status).toBe('planned')
    expect(record.steps.some(s => s.status === 'planned')).toBe(true)
  }
  const bad = await runAction('rollback-level-3', { config: sb.config, target: '../../etc/passwd' })
  expect(bad.code).toBe(1)
  expect(bad.outputs).toMatchObject({ decision: 'refused', reason_code: 'bad_target' })
  expect(new Set(await whoServes(sb.nginxUrl, 10))).toEqual(new Set(['green']))
})

test('validate: fails on the bad green, passes after Level 1', async () => {
  const before = await runAction('validate', { config: sb.config })
  expect(before.code).toBe(1)
  expect(before.outputs).toMatchObject({ decision: 'failed', passed: 'false' })
  expect(before.summary).toMatch(/\| error rate \| ❌ fail \|/)
  expect((await runAction('rollback-level-1', { config: sb.config })).code).toBe(0)
  const after = await runAction('validate', { config: sb.config })
  expect(after.code).toBe(0)
  expect(after.outputs).toMatchObject({ decision: 'passed', passed: 'true' })
})
