import { MemoryLogger } from '../../src/core/logger'
import { RUN_RECORD_SCHEMA, type RunRecord } from '../../src/core/run-record'
import { UserError } from '../../src/core/errors'
import { runSteps, stepDeadlines, type Step } from '../../src/engine/run-steps'

const record = (): RunRecord => ({
  schema: RUN_RECORD_SCHEMA,
  id: 'r',
  service: 's',
  environment: 'e',
  operation: 'rollback',
  reason: 'test',
  status: 'success',
  dryRun: false,
  startedAt: new Date().toISOString(),
  steps: []
})

function step(
  name: string,
  kind: Step['kind'],
  run: () => Promise<string> = () => Promise.resolve('done'),
  budgetSeconds = 10
): Step & { calls: number } {
  const s = {
    name,
    kind,
    budgetSeconds,
    calls: 0,
    describe: () => `would ${name}`,
    run: () => {
      s.calls++
      return run()
    }
  }
  return s
}

const yes = (): Promise<boolean> => Promise.resolve(true)

test('deadlines are the runbook shares scaled to the RTO', () => {
  expect(stepDeadlines([step('a', 'read', undefined, 30), step('b', 'read', undefined, 90)], 240)).toEqual([
    60, 180
  ])
  // never below the runbook's own time
  expect(stepDeadlines([step('a', 'read', undefined, 30)], 10)).toEqual([30])
})

test('a dry run looks, then plans: nothing after the first change runs', async () => {
  const steps = [
    step('look', 'read'),
    step('backup', 'write'),
    step('switch', 'destructive'),
    step('check', 'read')
  ]
  const r = record()
  await runSteps(r, steps, { dryRun: true, log: new MemoryLogger(), rtoSeconds: 300, confirm: yes })
  expect(steps.map(s => s.calls)).toEqual([1, 0, 0, 0])
  expect(r.steps.map(s => s.status)).toEqual(['ok', 'planned', 'planned', 'planned'])
  expect(r.steps[2]!.detail).toBe('would switch')
})

test('confirmation is asked once, before the first change; a no changes nothing', async () => {
  const steps = [step('look', 'read'), step('switch', 'destructive'), step('stop', 'destructive')]
  const asked: string[][] = []
  await expect(
    runSteps(record(), steps, {
      dryRun: false,
      log: new MemoryLogger(),
      rtoSeconds: 300,
      confirm: plan => {
        asked.push(plan.map(s => s.name))
        return Promise.resolve(false)
      }
    })
  ).rejects.toBeInstanceOf(UserError)
  expect(asked).toEqual([['switch', 'stop']])
  expect(steps.map(s => s.calls)).toEqual([1, 0, 0])
})

test('a failing step stops the run and the rest is recorded as skipped', async () => {
  const steps = [
    step('a', 'read'),
    step('b', 'destructive', () => Promise.reject(new Error('boom'))),
    step('c', 'read')
  ]
  const r = record()
  await expect(
    runSteps(r, steps, { dryRun: false, log: new MemoryLogger(), rtoSeconds: 300, confirm: yes })
  ).rejects.toThrow('boom')
  expect(r.steps.map(s => [s.name, s.status])).toEqual([
    ['a', 'ok'],
    ['b', 'failed'],
    ['c', 'skipped']
  ])
  expect(r.steps[1]!.detail).toBe('boom')
  expect(r.steps[1]!.durationMs).toBeGreaterThanOrEqual(0)
})

test('a step that passes its deadline fails and its signal is aborted', async () => {
  let aborted = false
  const slow: Step = {
    name: 'slow',
    kind: 'read',
    budgetSeconds: 0.05,
    describe: () => 'waits',
    run: ({ signal }) =>
      new Promise(resolve => {
        signal.addEventListener('abort', () => {
          aborted = true
          resolve('late')
        })
      })
  }
  await expect(
    runSteps(record(), [slow], { dryRun: false, log: new MemoryLogger(), rtoSeconds: 0, confirm: yes })
  ).rejects.toThrow(/passed its deadline/)
  expect(aborted).toBe(true)
})
