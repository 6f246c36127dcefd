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
  /** A light (safety) backup: data dirs and a logical dump, no physical base backup. */
  light?: boolean
  /** The data directories, one tar.zst each. */
  data?: ManifestData[]
  /** The database as captured; absent when the service has none. */
  database?: ManifestDatabase
  files: ManifestEntry[]
}

export interface ManifestData {
  name: string
  /** The directory as configured when captured (absolute). */
  path: string
  /** data/<name>.tar.zst inside the backup. */
  file: string
  /** Bytes on disk before compression: what a restore needs free. */
  bytes: number
  /** Whether the corruption marker was inside this directory when it was captured. */
  corruptionMarker?: boolean
}

export interface ManifestBaseBackup {
  /** database/base.tar.zst */
  file: string
  label: string
  startLsn: string
  startSegment: string
  timeline: number
  startTime: string
  /** When pg_basebackup finished: the earliest point this backup restores to. */
  endTime?: string
  /** Bytes of the base backup before compression. */
  bytes: number
}

export interface ManifestDatabase {
  kind: 'postgres' | 'sqlite'
  /** database/dump.tar.zst (PostgreSQL) or database/app.db (SQLite online backup). */
  file?: string
  /** The moment the captured data is exactly as of (the dump's snapshot, the SQLite backup), ISO-8601. */
  capturedAt?: string
  rowCounts?: Record<string, number>
  schemaVersion?: string
  /** Size of the live database when captured: what a restore needs free. */
  bytes?: number
  base?: ManifestBaseBackup
  /** The WAL window at capture time (where WAL is archived): recovery can stop anywhere in it. */
  wal?: { archiveDir: string; earliest: string; latest?: string; continuous: boolean }
  /** Why part of the capture is missing (a base backup skipped, a safety capture that failed). */
  notes?: string[]
  /** Set when the capture failed (only tolerated for a safety backup of a broken database). */
  error?: string
}

/** Backup ids: YYYYMMDD-HHMMSS, or rollback-safety-YYYYMMDD-HHMMSS for safety backups. */
export const BACKUP_ID = /^(rollback-safety-)?\d{8}-\d{6}$/

export function isBackupId(value: string): boolean {
  return BACKUP_ID.test(value)
}

/** The differences between what the manifest promises and what is on disk. */
export function manifestProblems(
  manifest: Manifest,
  actual: ReadonlyMap<string, ManifestEntry | undefined>
): string[] {
  const problems: string[] = []
  for (const want of manifest.files) {
    const got = actual.get(want.path)
    if (!got) problems.push(`${want.path}: missing`)
    else if (got.size !== want.size)
      problems.push(`${want.path}: size ${got.size}, manifest says ${want.size}`)
    else if (got.sha256 !== want.sha256)
      problems.push(`${want.path}: sha256 mismatch (file changed or corrupted)`)
  }
  return problems
}
