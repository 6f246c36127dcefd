import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import path from 'node:path'
import { LockHeldError } from '../../src/core/errors'
import { acquireLock, processStartTime } from '../../src/drivers/lock'
import { runCommand } from '../../src/drivers/exec'

/**
 * The service lock under contention (#18.6): 4 processes × up to 3,000 tries on one lock, a stale lock planted now
 * and then; at no moment may two of them hold it. Bounded: each contender stops after 20 s.
 */
const HARNESS = path.resolve(__dirname, '../support/lock-harness.ts')

let dir = ''
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'backout-lock-'))
})
afterEach(() => rmSync(dir, { recursive: true, force: true }))

interface Stats {
  acquired: number
  doubles: number
  refused: number
  planted: number
  tries: number
}

test('4 processes × 3,000 tries: never two holders, stale locks taken over one at a time', async () => {
  const deadline = Date.now() + 20_000
  const runs = await Promise.all(
    [0, 1, 2, 3].map(() =>
      runCommand([process.execPath, '--import', 'tsx', HARNESS, dir, '3000', String(deadline)], {
        cwd: path.resolve(__dirname, '../..')
      })
    )
  )
  for (const r of runs) expect(r).toMatchObject({ code: 0 })
  const stats = runs.map(r => JSON.parse(r.stdout.trim()) as Stats)
  const sum = (k: keyof Stats): number => stats.reduce((s, x) => s + x[k], 0)
  process.stdout.write(`lock harness: ${JSON.stringify(stats)}\n`)
  expect(sum('doubles')).toBe(0)
  expect(sum('acquired')).toBeGreaterThan(100)
  expect(sum('refused')).toBeGreaterThan(0) // there was contention
  expect(sum('planted')).toBeGreaterThan(0) // and stale locks to take over
}, 60_000)

test('a PID reused by another process does not hold the lock: its start time differs', () => {
  const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' })
  try {
    const pid = sleeper.pid!
    const start = processStartTime(pid)
    expect(start).toMatch(/^\d+$/)
    const file = path.join(dir, 'svc.lock')
    const holder = {
      host: hostname(),
      pid,
      startedAt: new Date().toISOString(),
      operation: 'rollback level 2'
    }
    // The recorded process is the one running: held.
    writeFileSync(file, JSON.stringify({ ...holder, procStart: start }))
    expect(() => acquireLock(dir, 'svc', 'snapshot')).toThrow(LockHeldError)
    // The PID now belongs to a process that started at another time: stale, taken over.
    writeFileSync(file, JSON.stringify({ ...holder, procStart: String(Number(start) - 1) }))
    const seen: unknown[] = []
    const lock = acquireLock(dir, 'svc', 'snapshot', h => seen.push(h))
    expect(seen).toHaveLength(1)
    expect(lock.holder.pid).toBe(process.pid)
    expect(lock.holder.procStart).toBe(processStartTime(process.pid))
    lock.release()
  } finally {
    sleeper.kill()
  }
})
