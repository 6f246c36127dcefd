import { AsyncLocalStorage } from 'node:async_hooks'
import { randomBytes } from 'node:crypto'
import { linkSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { hostname } from 'node:os'
import path from 'node:path'
import { LockHeldError } from '../core/errors'
import { isAlive } from './process'

/** Who holds a service's lock. */
export interface LockHolder {
  host: string
  pid: number
  /**
   * The holder's start time in clock ticks since boot (/proc/<pid>/stat, field 22) and the boot it belongs to: a
   * PID that a later process reuses has another start time, so it does not keep the lock held.
   */
  procStart?: string
  bootId?: string
  startedAt: string
  operation: string
  /** Random: makes each lock file's content unique, so that a lock is never mistaken for an earlier one. */
  token?: string
}

export interface Lock {
  holder: LockHolder
  release(): void
  /** Runs fn as the lock's holder: a nested acquire of the same lock inside it (a rollback's safety snapshot) holds it already. */
  run<T>(fn: () => Promise<T>): Promise<T>
}

/** The start time of a process (clock ticks since boot), undefined when it does not run or /proc is not there. */
export function processStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the command name (which may hold spaces and parentheses): state is field 3, starttime field 22.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
  } catch {
    return undefined
  }
}

function bootId(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
  } catch {
    return undefined
  }
}

function readHolder(file: string): { holder?: LockHolder; text?: string } {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {}
    throw e
  }
  try {
    const holder = JSON.parse(text) as LockHolder
    return typeof holder.pid === 'number' && typeof holder.host === 'string' ? { holder, text } : { text }
  } catch {
    return { text }
  }
}

function textOf(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return undefined
  }
}

/**
 * A lock held by a process on this host that no longer runs is stale and can be taken over — and so is one whose
 * PID now belongs to another process (another start time, or another boot).
 */
export function isStale(holder: LockHolder | undefined, host = hostname()): boolean {
  if (!holder) return true
  if (holder.host !== host) return false
  if (!isAlive(holder.pid)) return true
  if (holder.bootId && bootId() && holder.bootId !== bootId()) return true
  const start = processStartTime(holder.pid)
  return holder.procStart !== undefined && start !== undefined && start !== holder.procStart
}

/** Writes `content` to a fresh temp file beside `file`, then links it to `file`: exclusive, and never half written. */
function linkExclusive(file: string, content: string): boolean {
  const tmp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`
  writeFileSync(tmp, content, { flag: 'wx' })
  try {
    linkSync(tmp, file)
    return true
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw e
  } finally {
    rmSync(tmp, { force: true })
  }
}

/**
 * The locks the current async context holds (lock file → holder): set by Lock.run, so that only work started by the
 * holder — a rollback's safety snapshot — nests inside it. Another operation in the same process is refused as one
 * in another process is.
 */
const heldHere = new AsyncLocalStorage<ReadonlyMap<string, LockHolder>>()

/**
 * Takes the service's lock: the holder (host, PID, its start time) is written to a temp file that is then hard-linked
 * to `<service>.lock`, so the lock file is created exclusively and is never seen empty or half written. A live
 * holder → LockHeldError (exit 3) naming host, PID and age. A stale lock (its process is gone, or its PID now belongs
 * to another process) is removed under a second short-lived lock (`<service>.lock.break`) — only the inode that was
 * judged stale is removed (compared by content, which a random token makes unique), so a contender never removes a lock just taken — and said so through onStale.
 * Inside Lock.run the lock is reentrant: a snapshot taken during a rollback runs under the rollback's lock.
 */
export function acquireLock(
  stateDir: string,
  service: string,
  operation: string,
  onStale: (holder: LockHolder | undefined) => void = () => undefined
): Lock {
  mkdirSync(stateDir, { recursive: true })
  const file = path.join(stateDir, `${service}.lock`)
  const mine = heldHere.getStore()?.get(file)
  if (mine) return { holder: mine, release: () => undefined, run: fn => fn() }
  const holder: LockHolder = {
    host: hostname(),
    pid: process.pid,
    procStart: processStartTime(process.pid),
    bootId: bootId(),
    startedAt: new Date().toISOString(),
    operation,
    token: randomBytes(8).toString('hex')
  }
  const content = JSON.stringify(holder)
  for (let attempt = 0; attempt < 5; attempt++) {
    if (linkExclusive(file, content)) {
      return {
        holder,
        run: fn => heldHere.run(new Map([...(heldHere.getStore() ?? []), [file, holder]]), fn),
        release: () => {
          const current = readHolder(file).holder
          if (current && current.pid === holder.pid && current.host === holder.host)
            rmSync(file, { force: true })
        }
      }
    }
    const existing = readHolder(file)
    if (existing.text === undefined) continue // released in between: try again
    if (!isStale(existing.holder)) {
      const h = existing.holder!
      const age = Math.round((Date.now() - Date.parse(h.startedAt)) / 1000)
      throw new LockHeldError(
        `another operation holds the lock for ${service}: ${h.operation} by PID ${h.pid} on ${h.host}, ` +
          `started ${h.startedAt} (${age}s ago). Wait for it to finish; if that process is gone on another ` +
          `host, remove ${file} by hand`
      )
    }
    if (removeStale(file, existing.text)) onStale(existing.holder)
  }
  throw new LockHeldError(`could not take the lock ${file} — another backout is starting; try again`)
}

/**
 * Removes the lock file if it still holds what was judged stale (each lock's content is unique: it has a random
 * token; an inode number is not, it is reused at once), under `<file>.break`. True when it removed it.
 */
function removeStale(file: string, stale: string): boolean {
  const brk = `${file}.break`
  const me = JSON.stringify({ pid: process.pid, procStart: processStartTime(process.pid) })
  if (!linkExclusive(brk, me)) {
    // Held only for a few system calls: a break lock whose process is gone, or older than 10 s, is left over.
    let gone = false
    try {
      const b = JSON.parse(readFileSync(brk, 'utf8')) as { pid: number; procStart?: string }
      const start = processStartTime(b.pid)
      gone = !isAlive(b.pid) || (b.procStart !== undefined && start !== undefined && start !== b.procStart)
    } catch {
      gone = true
    }
    try {
      if (gone || Date.now() - statSync(brk).mtimeMs > 10_000) rmSync(brk, { force: true })
    } catch {
      /* removed meanwhile */
    }
    return false
  }
  try {
    if (textOf(file) !== stale) return false
    rmSync(file, { force: true })
    return true
  } finally {
    rmSync(brk, { force: true })
  }
}
