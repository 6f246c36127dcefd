import { existsSync } from 'node:fs'
import path from 'node:path'
import type { Config } from '../core/config'
import { foreignSqliteBackup } from '../core/sqlite-identity'
import type { BackupInfo } from './backup-store'
import { readSqliteIdentity } from './sqlite'

/**
 * Whether a SQLite backup may replace the configured database (the decision and its reasons:
 * core/sqlite-identity.ts), on the real files.
 */

/**
 * Why a backup must not replace the configured SQLite database (another application's, another host's, or a file
 * put in its place), as a refusal the operator can act on; undefined when it may, or when either side is not SQLite.
 */
export async function foreignBackup(
  database: Config['database'],
  backup: BackupInfo
): Promise<string | undefined> {
  const m = backup.manifest.database
  if (database?.kind !== 'sqlite' || m?.kind !== 'sqlite' || !m.file) return undefined
  const file = path.join(backup.dir, m.file)
  if (!existsSync(file)) return undefined // a missing file is the manifest check's to report
  let why: string | undefined
  try {
    const live = existsSync(database.path) ? await readSqliteIdentity(database.path) : undefined
    why = foreignSqliteBackup(await readSqliteIdentity(file), live, m.identity?.sqlite)
  } catch {
    return undefined // an unreadable file is integrity_check's to report
  }
  if (!why) return undefined
  return (
    `backup ${backup.id} is not a backup of this service's database: ${why}. Nothing was changed — pick a backup ` +
    `of ${database.path} (backout list)`
  )
}
