import {
  closeSync,
  existsSync,
  fsyncSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync
} from 'node:fs'
import type { Logger } from '../../core/logger'
import { formatBackupId } from '../../core/run-record'
import { unusedPath } from '../paths'

/**
 * The data-directory swap of a physical restore, journaled so that a kill before any of its renames converges:
 * the journal (`<dataDir>.backout-restore.json`) is written (and fsynced) before the first rename and names every
 * directory involved, so a later run can put the original back whatever was renamed already — even when no
 * directory is left at dataDir at all. Resuming = undoing: the original data directory comes back, an unverified
 * restored one is kept aside as *.backout-failed-*, and a staging copy left over is removed.
 */

export interface SwapJournal {
  dataDir: string
  /** Where the original data directory goes (and stays, on success). */
  aside: string
  /** The restored directory being renamed in. */
  staging: string
  /** Whether there was an original data directory to move aside. */
  hadOld: boolean
  /** Whether the cluster ran before the swap (a resume starts it again). */
  wasRunning: boolean
}

export function swapJournalFile(dataDir: string): string {
  return `${dataDir}.backout-restore.json`
}

export function readSwapJournal(dataDir: string): SwapJournal | undefined {
  const file = swapJournalFile(dataDir)
  if (!existsSync(file)) return undefined
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as SwapJournal
  } catch {
    // Written before any rename: a torn journal means nothing was renamed yet.
    return undefined
  }
}

function writeDurably(file: string, text: string): void {
  const tmp = `${file}.tmp`
  const fd = openSync(tmp, 'w', 0o600)
  try {
    writeSync(fd, text)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  renameSync(tmp, file)
}

/** Every rename of a restore's directories (a test kills the process before each: strace -e inject=rename). */
export function swapRename(from: string, to: string): void {
  renameSync(from, to)
}

/** Test hook: BACKOUT_TEST_KILL_AT=<name> kills this process (SIGKILL) at the named point of a restore. */
export function crashPoint(name: string): void {
  if (process.env.BACKOUT_TEST_KILL_AT === name) process.kill(process.pid, 'SIGKILL')
}

/** Journals the swap, then renames the original aside and the staged directory in. */
export function swapIn(journal: SwapJournal): void {
  writeDurably(swapJournalFile(journal.dataDir), JSON.stringify(journal))
  if (journal.hadOld && existsSync(journal.dataDir)) swapRename(journal.dataDir, journal.aside)
  swapRename(journal.staging, journal.dataDir)
}

/** The swap is final (the restore was verified): only the journal goes. */
export function finishSwap(dataDir: string): void {
  rmSync(swapJournalFile(dataDir), { force: true })
}

/**
 * Puts the original data directory back (the cluster must be stopped): the directory at dataDir, when it is not the
 * original, is kept as *.backout-failed-<time>; the journal goes last. Idempotent: safe to repeat after a kill at
 * any point. Returns where the unverified directory was kept, if anywhere.
 */
export function undoSwap(journal: SwapJournal, now: Date, logger?: Logger): string | undefined {
  const { dataDir, aside } = journal
  let failed: string | undefined
  // The original is still aside while `aside` exists (or there was none): what sits at dataDir is not it.
  if ((existsSync(aside) || !journal.hadOld) && existsSync(dataDir)) {
    failed = unusedPath(`${dataDir}.backout-failed-${formatBackupId(now)}`)
    swapRename(dataDir, failed)
    logger?.warn(`an unverified restored data directory was kept as ${failed}`)
  }
  if (existsSync(aside)) {
    swapRename(aside, dataDir)
    logger?.warn(`the original data directory ${dataDir} is back (from ${aside})`)
  }
  rmSync(journal.staging, { recursive: true, force: true })
  finishSwap(dataDir)
  return failed
}
