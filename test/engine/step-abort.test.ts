import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { parseConfig } from '../../src/core/config'
import { LockHeldError, OperationError, UserError, exitCodeFor, reasonCodeFor } from '../../src/core/errors'
import { MemoryLogger } from '../../src/core/logger'
import { runCommand } from '../../src/drivers/exec'
import { sleep } from '../../src/drivers/sleep'
import { isEscalatable, shouldEscalate } from '../../src/engine/escalate'
import { runOperation } from '../../src/engine/operation'
import type { Step } from '../../src/engine/run-steps'
import { minimalConfig } from '../support/minimal-config'

/**
 * A deadline stops the step's work (#18.2): its commands are killed — the whole process group — and waited for
 * before the lock is released; a second run cannot overlap. And exit codes keep their promise (#12.7).
 */
let dir: string
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'backout-abort-'))
})
afterEach(() => rmSync(dir, { recursive: true, force: true }))

const config = () =>
  parseConfig(
    {
      ...minimalConfig,
      state: { dir: path.join(dir, 'state') },
      history: { log: path.join(dir, 'history.log') }
    },
    'test'
  )

/** The pids of every process whose process group is pgid (from /proc). */
function groupMembers(pgid: number): number[] {
  const out: number[] = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      if (Number(fields[2]) === pgid && fields[0] !== 'Z') out.push(Number(name))
    } catch {
      // gone meanwhile
    }
  }
  return out
}

const yes = (): Promise<boolean> => Promise.resolve(true)

test('a step past its deadline: its child processes are killed and gone before the lock is released; a second run meanwhile gets exit 3', async () => {
  const cfg = config()
  const lockFile = path.join(cfg.state.dir, `${cfg.service}.lock`)
  const pidFile = path.join(dir, 'child.pid')
  // A shell that ignores SIGTERM and keeps starting children: only the group's SIGKILL (2 s later) ends it, so the
  // run holds the lock for those 2 s while it waits.
  const script = `echo $$ > ${pidFile}; trap '' TERM; while :; do sleep 1; done`
  const slow: Step = {
    name: 'Slow restore',
    kind: 'destructive',
    budgetSeconds: 0.3,
    describe: () => 'runs a long command',
    async run() {
      const res = await runCommand(['sh', '-c', script])
      return `exited ${res.code}`
    }
  }
  let pgid = 0
  const aliveWhenUnlocked: number[] = []
  let sawLock = false
  const watch = setInterval(() => {
    if (!pgid && existsSync(pidFile)) pgid = Number(readFileSync(pidFile, 'utf8'))
    if (existsSync(lockFile)) sawLock = true
    else if (sawLock && pgid) aliveWhenUnlocked.push(...groupMembers(pgid))
  }, 5)
  const log = new MemoryLogger()
  const started = Date.now()
  const first = runOperation({
    config: cfg,
    operation: 'rollback',
    level: 3,
    reason: 'test',
    dryRun: false,
    log,
    rtoSeconds: 0,
    confirm: yes,
    steps: () => [slow]
  })
  // Past the deadline, while the first run waits for its step's work to end: the lock is still held.
  await sleep(900)
  expect(pgid).toBeGreaterThan(0)
  expect(groupMembers(pgid).length).toBeGreaterThan(0)
  await expect(
    runOperation({
      config: cfg,
      operation: 'rollback',
      level: 3,
      reason: 'second',
      dryRun: false,
      log,
      rtoSeconds: 0,
      confirm: yes,
      steps: () => [slow]
    })
  ).rejects.toBeInstanceOf(LockHeldError)
  const { record, error } = await first
  clearInterval(watch)
  const took = Date.now() - started
  expect(error).toBeInstanceOf(OperationError)
  expect(reasonCodeFor(error)).toBe('deadline')
  expect(record.status).toBe('failed')
  expect(record.error).toMatch(/passed its deadline of 0\.3s .*its work was stopped/)
  // Nothing of the step is left, and nothing was left when the lock went.
  expect(groupMembers(pgid)).toEqual([])
  expect(existsSync(`/proc/${pgid}`)).toBe(false)
  expect(aliveWhenUnlocked).toEqual([])
  expect(sawLock).toBe(true)
  expect(existsSync(lockFile)).toBe(false)
  // The run waited for the SIGKILL (2 s after the abort) rather than returning at the deadline.
  expect(took).toBeGreaterThanOrEqual(2000)
  console.log(`deadline 0.3 s; the run returned after ${took} ms, its children gone`)
})

test('a deadline also ends waits and polls of the step (sleep reads the step signal)', async () => {
  const step: Step = {
    name: 'Wait for health',
    kind: 'read',
    budgetSeconds: 0.2,
    describe: () => 'waits',
    async run() {
      await sleep(60_000) // no signal passed: the step's own is used
      return 'woke'
    }
  }
  const started = Date.now()
  const { error } = await runOperation({
    config: config(),
    operation: 'rollback',
    level: 1,
    reason: 'test',
    dryRun: false,
    log: new MemoryLogger(),
    rtoSeconds: 0,
    confirm: yes,
    steps: () => [step]
  })
  expect(reasonCodeFor(error)).toBe('deadline')
  expect(Date.now() - started).toBeLessThan(5000)
})

test('a refusal after a destructive step ran is a failure (exit 1) that keeps its reason code; before, exit 2', async () => {
  const refuse = (name: string, kind: Step['kind']): Step => ({
    name,
    kind,
    budgetSeconds: 10,
    describe: () => name,
    run: () => Promise.reject(new UserError('a migration is running', 'migration_running'))
  })
  const ok = (name: string, kind: Step['kind']): Step => ({
    name,
    kind,
    budgetSeconds: 10,
    describe: () => name,
    run: () => Promise.resolve('done')
  })
  const run = (steps: Step[]) =>
    runOperation({
      config: config(),
      operation: 'rollback',
      level: 2,
      reason: 'test',
      dryRun: false,
      log: new MemoryLogger(),
      rtoSeconds: 0,
      confirm: yes,
      steps: () => steps
    })
  const before = await run([ok('Preparation', 'read'), ok('Safety backup', 'write'), refuse('Lock', 'read')])
  expect(before.error).toBeInstanceOf(UserError)
  expect(exitCodeFor(before.error)).toBe(2)
  expect(before.record.status).toBe('refused')

  const after = await run([
    ok('Preparation', 'read'),
    ok('Stop current deployment', 'destructive'),
    refuse('Roll back database migrations', 'destructive')
  ])
  expect(after.error).toBeInstanceOf(OperationError)
  expect(exitCodeFor(after.error)).toBe(1)
  expect(after.record.status).toBe('failed')
  expect(after.record.reasonCode).toBe('migration_running')
  expect(after.record.error).toMatch(/after "Stop current deployment" had changed the service/)
  // and it does not escalate: the next level would meet the same running migration
  expect(shouldEscalate(after.error)).toBe(false)
})

test('isEscalatable: never after a lock, a running migration, bad config or a refused confirmation', () => {
  for (const code of ['lock_held', 'migration_running', 'bad_config', 'not_confirmed', 'bad_argument'])
    expect(isEscalatable(code)).toBe(false)
  for (const code of ['previous_unhealthy', 'deadline', 'validation_failed', 'integrity_failed', 'failed'])
    expect(isEscalatable(code)).toBe(true)
  expect(isEscalatable(undefined)).toBe(false)
  expect(shouldEscalate(new LockHeldError('held'))).toBe(false)
})
