import path from 'node:path'
import { messageOf } from '../core/errors'
import { sanitizeLine } from '../core/sanitize'
import { baseBackupDrill, extractDrill, restoreDrill } from './database-backup'
import type { Service } from './service'

export interface VerifyReport {
  id: string
  ok: boolean
  quick: boolean
  /** Every problem found; empty when the backup is intact (and, unless quick, restorable). */
  problems: string[]
  /** What was checked, one line each. */
  checks: string[]
  durationMs: number
}

/**
 * `backout verify ID`: the size and sha256 of every file against the manifest, then — unless quick — a restore
 * drill that changes nothing the service uses: each data archive extracted into a scratch dir, the base backup
 * extracted and checked with pg_verifybackup, the database restored into a scratch database (PostgreSQL) or a temp
 * file (SQLite) and its row counts compared with those recorded at snapshot time.
 */
export async function verifyBackup(
  service: Service,
  id: string,
  options: { quick: boolean }
): Promise<VerifyReport> {
  const started = performance.now()
  const backup = service.store.get(id)
  const problems = await service.store.verify(id)
  const checks = [
    ...(backup.manifest.seal && !problems.some(p => p.startsWith('manifest.json:'))
      ? [
          `manifest.json: sealed with key ${backup.manifest.seal.keyId}, seal matches (it covers id ${backup.manifest.id}, ` +
            `service ${backup.manifest.service}, taken on ${backup.manifest.host ?? '?'})`
        ]
      : []),
    `checksums: ${backup.manifest.files.length} files${problems.length ? '' : ', every sha256 matches'}`
  ]
  if (!options.quick && problems.length === 0) {
    for (const d of backup.manifest.data ?? []) {
      try {
        await extractDrill(path.join(backup.dir, d.file), path.dirname(backup.dir))
        checks.push(`${d.file}: extracts`)
      } catch (e) {
        problems.push(messageOf(e))
      }
    }
    const base = await baseBackupDrill(service, backup)
    problems.push(...base.map(p => `base backup: ${p}`))
    if (backup.manifest.database?.base && base.length === 0)
      checks.push('base backup: passes pg_verifybackup')
    const drill = await restoreDrill(service, backup)
    problems.push(...drill.problems)
    if (drill.detail)
      checks.push(`restore drill: ${drill.detail}${drill.problems.length ? '' : ', row counts match'}`)
  }
  // What a manifest says (a service name, a file name) reaches the terminal: no control characters in it.
  return {
    id,
    ok: problems.length === 0,
    quick: options.quick,
    problems: problems.map(sanitizeLine),
    checks: checks.map(sanitizeLine),
    durationMs: Math.round(performance.now() - started)
  }
}
