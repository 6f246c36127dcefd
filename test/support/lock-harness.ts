/**
 * One contender of the lock harness (test/reliability/lock-race.test.ts): tries to take the lock `tries` times (or
 * until `deadline`, epoch ms); each time it holds it, it creates `inside` exclusively — finding it already there
 * means two processes held the lock at once — and sometimes leaves a stale lock (a dead PID) behind for the others
 * to take over. Prints {"acquired":n,"doubles":n,"refused":n,"planted":n}.
 */
import { linkSync, openSync, closeSync, rmSync, writeFileSync } from 'node:fs'
import { hostname } from 'node:os'
import path from 'node:path'
import { acquireLock } from '../../src/drivers/lock'

const [dir, triesArg, deadlineArg] = process.argv.slice(2)
if (!dir || !triesArg || !deadlineArg) throw new Error('usage: lock-harness DIR TRIES DEADLINE_MS')
const tries = Number(triesArg)
const deadline = Number(deadlineArg)
const inside = path.join(dir, 'inside')
const stats = { acquired: 0, doubles: 0, refused: 0, planted: 0, tries: 0 }
for (let i = 0; i < tries && Date.now() < deadline; i++) {
  stats.tries++
  let lock
  try {
    lock = acquireLock(dir, 'svc', 'harness')
  } catch (e) {
    if ((e as Error).name !== 'LockHeldError') throw e
    stats.refused++
    continue
  }
  stats.acquired++
  try {
    closeSync(openSync(inside, 'wx'))
    rmSync(inside)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
    stats.doubles++
  }
  lock.release()
  if (i % 40 === 7) {
    // A lock left by a process that died: the next contenders must take it over, one at a time.
    const tmp = path.join(dir, `plant-${process.pid}-${i}`)
    const dead = {
      host: hostname(),
      pid: 2 ** 22 + 12345,
      startedAt: new Date().toISOString(),
      operation: 'dead'
    }
    writeFileSync(tmp, JSON.stringify(dead))
    try {
      linkSync(tmp, path.join(dir, 'svc.lock'))
      stats.planted++
    } catch {
      /* someone holds it now */
    }
    rmSync(tmp, { force: true })
  }
}
process.stdout.write(JSON.stringify(stats) + '\n')
