import { startSandbox, whoServes, type TestSandbox } from '../support/cli'
import type { RunRecord } from '../../src/core/run-record'
import { runAction } from '../support/action'

let sb: TestSandbox
beforeAll(async () => {
  sb = await startSandbox()
})
afterAll(async () => {
  await sb.down()
})

test('a dry run through the action plans and changes nothing', async () => {
  const run = await runAction('rollback-level-1', { config: sb.config, 'dry-run': 'true' })
  expect(run.code).toBe(0)
  expect(run.outputs.decision).toBe('planned')
  const result = JSON.parse(run.outputs.result!) as { schema: string; runId: string }
  expect(result.schema).toBe('backout.action-result/v2')
  expect(result.runId).toBe(run.outputs.run_id)
  const record = run.full!.record as RunRecord
  expect(record.id).toBe(run.outputs.run_id)
  expect(record.steps.find(s => s.name === 'Switch traffic')!.status).toBe('planned')
  expect(new Set(await whoServes(sb.nginxUrl, 10))).toEqual(new Set(['green']))
})

test('rollback-level-1 runs as the runner runs it and nginx then serves only blue', async () => {
  const run = await runAction('rollback-level-1', { config: sb.config, reason: 'error rate 30%' })
  expect(run.code).toBe(0)
  expect(run.outputs).toMatchObject({
    decision: 'rolled_back',
    reason_code: 'ok',
    from: 'v2.5.0',
    to: 'v2.4.9'
  })
  expect(run.outputs.safety_backup_id).toMatch(/^rollback-safety-\d{8}-\d{6}$/)
  expect(run.summary).toContain('Switch traffic | ok |')
  expect(run.summary).toContain('```mermaid')
  expect(new Set(await whoServes(sb.nginxUrl, 30))).toEqual(new Set(['blue']))
})

test('a bad boolean input is refused (bad_input) with the input named, instead of becoming false', async () => {
  const run = await runAction('rollback-level-1', { config: sb.config, 'dry-run': 'yes please' })
  expect(run.code).toBe(1)
  expect(run.stdout).toContain('::error::input dry-run: expected true or false')
  expect(run.outputs).toMatchObject({ decision: 'refused', reason_code: 'bad_input' })
})
