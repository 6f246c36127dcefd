import { createHash, createHmac, timingSafeEqual } from 'node:crypto'
import stableStringify from 'fast-json-stable-stringify'
import type { SqliteIdentity } from './sqlite-identity'

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
  /** The host that took the backup. Sealed with id and service: a seal without it is from an older backout. */
  host?: string
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
  /**
   * manifest.json covers every file; the seal covers manifest.json: an HMAC-SHA256, with a key kept outside the
   * backup directory, over the manifest's canonical JSON (sorted keys) without the seal.
   */
  seal?: ManifestSeal
}

export interface ManifestSeal {
  alg: 'hmac-sha256'
  /** The first 16 hex digits of the key's sha256: names the key without revealing it. */
  keyId: string
  mac: string
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
  /** The system identifier in the base backup's pg_control: the cluster it is a copy of. */
  systemIdentifier?: string
  /** Every database the cluster held when the base backup was taken (it restores them all). Absent: unknown. */
  databases?: { name: string; oid: string; bytes: number; writes?: number }[]
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
  /**
   * What ties the capture to this service's database, checked before a restore. The PostgreSQL cluster's system
   * identifier (initdb's, kept by physical backups and restores) and the dump's own header: which database, when
   * pg_dump wrote it, and the sha256 of its table of contents (toc.dat).
   */
  identity?: {
    systemIdentifier?: string
    database?: string
    dumpTocSha256?: string
    /** SQLite: the file's path, application_id (backout's identity), tables and schema (see sqlite-identity.ts). */
    sqlite?: SqliteIdentity
  }
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

/** Beyond this, manifest.json is not read at all (a real one is a few kilobytes). */
export const MANIFEST_MAX_BYTES = 16 * 1024 * 1024

const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v)
const isStr = (v: unknown): v is string => typeof v === 'string'

/**
 * What makes a parsed manifest.json unusable (undefined when it has the shape of one): a wrong schema, a missing or
 * mistyped field, a file entry that is not a relative path with a size and sha256. Checked before anything reads it.
 */
export function manifestShapeProblem(m: unknown): string | undefined {
  if (!isObj(m)) return 'is not a JSON object'
  if (m.schema !== MANIFEST_SCHEMA) return `is not a ${MANIFEST_SCHEMA} manifest (schema ${String(m.schema)})`
  if (!isStr(m.id) || !isBackupId(m.id)) return 'has no backup id (id)'
  if (!isStr(m.service)) return 'has no service'
  if (m.kind !== 'snapshot' && m.kind !== 'safety')
    return `has kind ${JSON.stringify(m.kind)}, expected snapshot or safety`
  if (!isStr(m.createdAt) || Number.isNaN(Date.parse(m.createdAt))) return 'has no valid createdAt'
  const v = m.versions
  if (!isObj(v) || !isStr(v.blue) || !isStr(v.green) || (v.live !== undefined && !isStr(v.live)))
    return 'has no versions (blue, green)'
  if (!Array.isArray(m.files)) return 'has no file list (files)'
  for (const f of m.files as unknown[]) {
    if (
      !isObj(f) ||
      !isStr(f.path) ||
      f.path.startsWith('/') ||
      f.path.split(/[\\/]/).includes('..') ||
      !Number.isSafeInteger(f.size) ||
      !isStr(f.sha256) ||
      !/^[0-9a-f]{64}$/.test(f.sha256)
    )
      return `has a malformed file entry: ${JSON.stringify(f).slice(0, 120)}`
  }
  if (
    m.data !== undefined &&
    (!Array.isArray(m.data) || !m.data.every(d => isObj(d) && isStr(d.file) && isStr(d.name)))
  )
    return 'has a malformed data list'
  if (m.database !== undefined && !isObj(m.database)) return 'has a malformed database section'
  return undefined
}

/** Files the manifest names (data archives, database files) that are not among its checksummed files. */
export function unlistedReferences(manifest: Manifest): string[] {
  const listed = new Set(manifest.files.map(f => f.path))
  const named = [
    ...(manifest.data ?? []).map(d => d.file),
    ...(manifest.database?.file ? [manifest.database.file] : []),
    ...(manifest.database?.base?.file ? [manifest.database.base.file] : [])
  ]
  return named
    .filter(f => !listed.has(f))
    .map(f => `${f}: named by the manifest but not among its checksummed files`)
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

/** The key's public name. */
export function sealKeyId(key: string): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 16)
}

/** The manifest without its seal: what a seal covers. */
export function withoutSeal(manifest: Manifest): Manifest {
  const copy = { ...manifest }
  delete copy.seal
  return copy
}

/** The seal of a manifest (any seal it carries is left out of what is sealed). */
export function sealManifest(manifest: Manifest, key: string): ManifestSeal {
  const mac = createHmac('sha256', key)
    .update(stableStringify(withoutSeal(manifest)))
    .digest('hex')
  return { alg: 'hmac-sha256', keyId: sealKeyId(key), mac }
}

/**
 * What is wrong with a manifest's seal, with the remedy; undefined when it is sealed with this key and matches.
 * Without a key (none configured and none generated on this host yet) nothing can be checked: that too is a problem.
 */
export function sealProblem(manifest: Manifest, key: string | undefined): string | undefined {
  const trust = `if you trust this backup, \`backout seal ${manifest.id}\` checks its files and seals it with this host's key`
  const seal = manifest.seal
  if (!seal || seal.alg !== 'hmac-sha256' || typeof seal.mac !== 'string')
    return `manifest.json: not sealed (not written by backout snapshot, or its seal was removed) — ${trust}`
  if (!key)
    return `manifest.json: sealed with key ${seal.keyId}, and this host has no seal key — set backups.sealKey to that key, or ${trust}`
  const mine = sealKeyId(key)
  if (seal.keyId !== mine)
    return `manifest.json: sealed with key ${seal.keyId}, this host's key is ${mine} — set backups.sealKey to the key that sealed it, or ${trust}`
  const want = Buffer.from(sealManifest(manifest, key).mac, 'hex')
  const got = Buffer.from(seal.mac, 'hex')
  if (got.length !== want.length || !timingSafeEqual(got, want))
    return (
      'manifest.json: seal does not match — the manifest was changed after the backup was taken; pick another ' +
      `backup, or, if the change was yours, \`backout seal ${manifest.id}\` checks the files and reseals it`
    )
  if (typeof manifest.host !== 'string')
    return (
      "manifest.json: sealed by an older backout whose seal does not cover the backup's id, service and host — " +
      trust
    )
  return undefined
}
