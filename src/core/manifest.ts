/** manifest.json: the size and sha256 of every file of a backup, written last. */
export const MANIFEST_SCHEMA = 'backout.manifest/v1'

export interface ManifestEntry {
  path: string
  size: number
  sha256: string
}

export interface Manifest {
  schema: typeof MANIFEST_SCHEMA
  id: string
  service: string
  kind: 'snapshot' | 'safety'
  createdAt: string
  /** The version nginx served when the backup was taken, and each target's version. */
  versions: { live?: string; blue: string; green: string }
  schemaVersion?: string
  rowCounts?: Record<string, number>
  files: ManifestEntry[]
}

/** Backup ids: YYYYMMDD-HHMMSS, or rollback-safety-YYYYMMDD-HHMMSS for safety backups. */
export const BACKUP_ID = /^(rollback-safety-)?\d{8}-\d{6}$/

export function isBackupId(value: string): boolean {
  return BACKUP_ID.test(value)
}

/** The differences between what the manifest promises and what is on disk. */
export function manifestProblems(manifest: Manifest, actual: ReadonlyMap<string, ManifestEntry | undefined>): string[] {
  const problems: string[] = []
  for (const want of manifest.files) {
    const got = actual.get(want.path)
    if (!got) problems.push(`${want.path}: missing`)
    else if (got.size !== want.size) problems.push(`${want.path}: size ${got.size}, manifest says ${want.size}`)
    else if (got.sha256 !== want.sha256) problems.push(`${want.path}: sha256 mismatch (file changed or corrupted)`)
  }
  return problems
}
