import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import type { BackupInfo } from '../drivers/backup-store'
import { untarZstd } from '../drivers/archive'

/**
 * A prepared extraction: a backup archive unpacked by a pre-flight check, while the service still runs, into a
 * scratch directory that the restore then uses (renames into place, or reads) instead of unpacking it again. The
 * archive in the backup is only read. `${dir}.verified` holds the archive's sha256 once the extraction is complete
 * and checked, so a later run (a resumed one) reuses it only for exactly that archive.
 */

/** The sha256 the backup's manifest records for one of its files. */
export function manifestSha(backup: BackupInfo, rel: string): string | undefined {
  return backup.manifest.files.find(f => f.path === rel)?.sha256
}

/** `dir` when it holds a complete, checked extraction of the archive with this sha256. */
export function readyExtraction(dir: string, sha: string | undefined): string | undefined {
  const marker = `${dir}.verified`
  if (!sha || !existsSync(dir) || !existsSync(marker)) return undefined
  return readFileSync(marker, 'utf8').trim() === sha ? dir : undefined
}

/** Removes a prepared extraction and its marker. */
export function discardExtraction(dir: string): void {
  rmSync(dir, { recursive: true, force: true })
  rmSync(`${dir}.verified`, { force: true })
}

/**
 * Unpacks `archive` into `dir` (reusing a ready extraction of the same sha256), telling `hashed` the archive's sha256
 * as read, then runs `check` on the result; marks it verified only when all of that passed. On any failure the
 * directory is removed and the error passed on as is, for the caller to word.
 */
export async function prepareExtraction(
  archive: string,
  dir: string,
  sha: string,
  options: { hashed?: (sha256: string) => void; check?: (dir: string) => Promise<void> } = {}
): Promise<string> {
  const ready = readyExtraction(dir, sha)
  if (ready) return ready
  discardExtraction(dir)
  try {
    const extracted = await untarZstd(archive, dir)
    options.hashed?.(extracted.sha256)
    await options.check?.(dir)
  } catch (e) {
    discardExtraction(dir)
    throw e
  }
  writeFileSync(`${dir}.verified`, sha + '\n')
  return dir
}
