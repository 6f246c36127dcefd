import {
  closeSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  writeSync,
  renameSync
} from 'node:fs'
import { hostname } from 'node:os'
import path from 'node:path'
import { LockHeldError } from '../core/errors'
import { isAlive } from './process'

/** Who holds a service's lock. */
export interface LockHolder {
  host: string
  pid: number
  startedAt: string
  operation: string
}

export interface Lock {
  holder: LockHolder
  release(): void
}

function readHolder(file: string): LockHolder | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as LockHolder
  } catch {
    return undefined
  }
}

/** A lock held by a process on this host that no longer runs is stale and can be taken over. */
export function isStale(holder: LockHolder | undefined, host = hostname()): boolean {
  if (!holder) return true
  return holder.host === host && !isAlive(holder.pid)
}

/**
 * Takes the service's lock (one file, created exclusively). A live holder → LockHeldError (exit 3) naming
 * host, PID and age. A stale lock (its process is gone) is taken over, and said so through onStale.
 */
export function acquireLock(
  stateDir: string,
  service: string,
  operation: string,
  onStale: (holder: LockHolder | undefined) => void = () => undefined
): Lock {
  mkdirSync(stateDir, { recursive: true })
  const file = path.join(stateDir, `${service}.lock`)
  const holder: LockHolder = {
    host: hostname(),
    pid: process.pid,
    startedAt: new Date().toISOString(),
    operation
  }
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(file, 'wx')
      writeSync(fd, JSON.stringify(holder))
      closeSync(fd)
      return {
        holder,
        release: () => {
          const current = readHolder(file)
          if (current && current.pid === holder.pid && current.host === holder.host)
            rmSync(file, { force: true })
        }
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
    }
    const existing = readHolder(file)
    if (!isStale(existing)) {
      const h = existing as LockHolder
      const age = Math.round((Date.now() - Date.parse(h.startedAt)) / 1000)
      throw new LockHeldError(
        `another operation holds the lock for ${service}: ${h.operation} by PID ${h.pid} on ${h.host}, ` +
          `started ${h.startedAt} (${age}s ago). Wait for it to finish; if that process is gone on another ` +
          `host, remove ${file} by hand`
      )
    }
    onStale(existing)
    // Move the stale lock aside atomically so that only one contender takes it over.
    // If what we moved turns out to be a live lock (another contender took over in between), put it back.
    const aside = `${file}.stale-${process.pid}`
    try {
      renameSync(file, aside)
    } catch {
      continue // another contender moved it first
    }
    const moved = readHolder(aside)
    if (!isStale(moved)) {
      try {
        linkSync(aside, file)
      } catch {
        /* a newer lock is already in place */
      }
    }
    rmSync(aside, { force: true })
  }
  throw new LockHeldError(`could not take the lock ${file} — another backout is starting; try again`)
}
