import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import path from 'node:path'
import type { Config } from '../core/config'
import { OperationError, UserError, messageOf } from '../core/errors'
import type { Logger } from '../core/logger'
import type { ManifestDatabase } from '../core/manifest'
import { DiskFullError, untarZstd, tarZstd } from '../drivers/archive'
import type { BackupInfo } from '../drivers/backup-store'
import { pgQuery } from '../drivers/database'
import { runCommand } from '../drivers/exec'
import {
  baseBackup,
  checkWalContinuity,
  flushWalToArchive,
  logicalDump,
  logicalRestore,
  physicalRestore,
  recoverInterruptedRestore,
  readDumpToc,
  systemIdentifierOf,
  urlForDatabase,
  verifyBaseBackup,
  walWindow,
  type BaseBackupInfo,
  type WalWindow
} from '../drivers/postgres-backup'
import {
  clusterPid,
  describeCluster,
  findPgBinDir,
  startCluster,
  type Cluster
} from '../drivers/postgres-cluster'
import { listClusterDatabases } from '../drivers/postgres/cluster-contents'
import { readSwapJournal } from '../drivers/postgres/restore-swap'
import { dataDirTimeline } from '../drivers/postgres/timelines'
import * as sqlite from '../drivers/sqlite'
import { foreignBackup } from '../drivers/sqlite-identity'
import { discardExtraction, manifestSha, prepareExtraction, readyExtraction } from './prepared'
import { decidedRestorePath, decideRestorePath, restorePathText, type RestorePath } from './restore-path'
import type { Service } from './service'

/**
 * The database side of a backup. PostgreSQL: a logical dump always (portable: pg_dump -Fd -j2 -Z0 | zstd) and,
 * where backout can reach the cluster's data directory, a physical base backup (restore = file copy + WAL replay);
 * SQLite: the online backup API, never a plain copy. Restores pick physical over logical when they can.
 */

type Postgres = Extract<NonNullable<Config['database']>, { kind: 'postgres' }>

export const DUMP_FILE = 'database/dump.tar.zst'
export const BASE_FILE = 'database/base.tar.zst'
export const SQLITE_FILE = 'database/app.db'

const LOCAL_HOSTS = new Set(['127.0.0.1', 'localhost', '::1', '[::1]'])

async function du(dir: string): Promise<number> {
  const res = await runCommand(['du', '-sb', dir])
  return res.code === 0 ? Number(res.stdout.split('\t')[0]) : 0
}

/** The database name in a postgresql:// URL. */
function databaseName(url: string): string {
  return decodeURIComponent(new URL(url).pathname.replace(/^\//, '')) || 'postgres'
}

/**
 * The cluster backout can manage physically: database.dataDir is set, holds a cluster, and the URL points at this
 * machine. Undefined (with why) otherwise — then only the logical dump is possible.
 */
export function localCluster(db: Postgres): { cluster?: Cluster; why?: string } {
  if (!db.dataDir) return { why: 'database.dataDir is not set' }
  // A restore interrupted mid-swap may have left no directory at dataDir: its journal still names the cluster.
  if (!existsSync(path.join(db.dataDir, 'PG_VERSION')) && !readSwapJournal(db.dataDir))
    return { why: `database.dataDir ${db.dataDir} holds no PostgreSQL cluster (no PG_VERSION)` }
  const u = new URL(db.url)
  if (!LOCAL_HOSTS.has(u.hostname)) return { why: `the database host ${u.hostname} is not this machine` }
  const binDir = db.binDir ?? findPgBinDir()
  if (!binDir) return { why: 'PostgreSQL binaries not found (set database.binDir)' }
  return {
    cluster: describeCluster(
      { dataDir: db.dataDir, port: Number(u.port || 5432), connectUrl: db.url },
      binDir
    )
  }
}

/** The server log backout's pg_ctl writes to when it (re)starts the cluster for a restore. */
function clusterLog(config: Config): string {
  const dir = path.join(config.state.dir, 'logs')
  mkdirSync(dir, { recursive: true })
  return path.join(dir, 'postgres.log')
}

/** Whether a physical restore's swap was interrupted (its journal is there): convergeInterruptedRestore puts it back. */
export function interruptedRestorePending(config: Config): boolean {
  const db = config.database
  return db?.kind === 'postgres' && db.dataDir !== undefined && readSwapJournal(db.dataDir) !== undefined
}

/**
 * Converges a physical restore that was interrupted (a kill before any rename of its swap, during the replay):
 * the original data directory back and running as it was, before anything else looks at the cluster. Without it a
 * re-run found no data directory (no PG_VERSION), took the logical path and failed to connect.
 */
export async function convergeInterruptedRestore(
  service: Service,
  log: Logger = service.log
): Promise<boolean> {
  const db = service.config.database
  if (db?.kind !== 'postgres' || !db.dataDir || !interruptedRestorePending(service.config)) return false
  const { cluster } = localCluster(db)
  if (!cluster) return false
  log.warn(`a restore of ${db.dataDir} was interrupted: putting the original data directory back first`)
  return recoverInterruptedRestore(cluster, new Date(), log, clusterLog(service.config))
}

/** Bytes the live database takes: for disk estimates before a snapshot. */
export async function liveDatabaseBytes(config: Config): Promise<{ dump: number; base: number }> {
  const db = config.database
  if (!db) return { dump: 0, base: 0 }
  if (db.kind === 'sqlite') return { dump: existsSync(db.path) ? statSync(db.path).size : 0, base: 0 }
  const { cluster } = localCluster(db)
  let dump = 0
  try {
    const [row] = await pgQuery<{ n: string }>(db.url, 'SELECT pg_database_size(current_database()) AS n')
    dump = Number(row?.n ?? 0)
  } catch {
    dump = 0
  }
  return { dump, base: cluster ? await du(cluster.dataDir) : 0 }
}

export interface CaptureOptions {
  light?: boolean
  tolerateFailure?: boolean
  signal?: AbortSignal
  /**
   * Told the size and sha256 of each file written by a stream that hashed it while writing (path relative to
   * writerDir), so that the backup's manifest need not read it again (BackupWriter.addHashed).
   */
  hashed?: (relPath: string, written: { size: number; sha256: string }) => void
}

/**
 * Captures the service's database into writerDir (a backup being written) and returns the manifest's database
 * fields. `light` (safety backups) skips the physical base backup. `tolerateFailure` (the emergency snapshot of a
 * broken database) records the error instead of throwing: the restore that follows keeps the broken original
 * aside anyway.
 */
export async function captureDatabase(
  service: Service,
  writerDir: string,
  options: CaptureOptions = {}
): Promise<ManifestDatabase | undefined> {
  const db = service.config.database
  if (!db) return undefined
  try {
    return db.kind === 'sqlite'
      ? await captureSqlite(db.path, writerDir, options.light)
      : await capturePostgres(service, db, writerDir, options)
  } catch (e) {
    if (!options.tolerateFailure) throw e
    service.log.warn(`the database could not be captured: ${messageOf(e)}`)
    return { kind: db.kind, error: messageOf(e) }
  }
}

async function captureSqlite(dbPath: string, writerDir: string, light?: boolean): Promise<ManifestDatabase> {
  // A full snapshot stores backout's identity in a database that has none yet (core/sqlite-identity.ts); a file
  // backout may not write to stays unmarked (the backup is then tied to it by its tables only).
  if (!light) await sqlite.markSqliteIdentity(dbPath).catch(() => undefined)
  const capturedAt = new Date().toISOString()
  mkdirSync(path.join(writerDir, path.dirname(SQLITE_FILE)), { recursive: true })
  const res = await sqlite.onlineBackup(dbPath, path.join(writerDir, SQLITE_FILE))
  return {
    kind: 'sqlite',
    file: SQLITE_FILE,
    capturedAt,
    rowCounts: res.counts,
    schemaVersion: res.schemaVersion,
    bytes: res.size,
    identity: { sqlite: res.identity }
  }
}

async function capturePostgres(
  service: Service,
  db: Postgres,
  writerDir: string,
  options: CaptureOptions
): Promise<ManifestDatabase> {
  const dump = await logicalDump({
    url: db.url,
    binDir: db.binDir,
    outFile: path.join(writerDir, DUMP_FILE),
    zstd: { signal: options.signal }
  })
  options.hashed?.(DUMP_FILE, dump)
  const out: ManifestDatabase = {
    kind: 'postgres',
    file: DUMP_FILE,
    capturedAt: dump.snapshotTime,
    rowCounts: dump.rowCounts,
    schemaVersion: dump.schemaVersion?.version,
    bytes: (await liveDatabaseBytes(service.config)).dump,
    identity: {
      database: dump.database,
      dumpTocSha256: dump.tocSha256,
      ...(dump.systemIdentifier ? { systemIdentifier: dump.systemIdentifier } : {})
    },
    notes: []
  }
  if (options.light) {
    out.notes!.push('light backup: logical dump only, no base backup')
    return out
  }
  const { cluster, why } = localCluster(db)
  if (!cluster || !clusterPid(cluster.dataDir)) {
    out.notes!.push(`no base backup: ${why ?? `the cluster in ${db.dataDir} is not running`}`)
    return out
  }
  const staging = path.join(writerDir, '.base')
  // Which databases the base backup holds (listed before it starts: anything written during it counts as a change).
  const databases = await listClusterDatabases(db.url).catch((e: unknown) => {
    out.notes!.push(`the cluster's databases could not be listed: ${messageOf(e)}`)
    return undefined
  })
  try {
    const info = await baseBackup({ cluster, outDir: staging, label: `backout ${path.basename(writerDir)}` })
    const systemIdentifier = await systemIdentifierOf(staging, cluster.binDir)
    const bytes = await du(staging)
    const written = await tarZstd(staging, path.join(writerDir, BASE_FILE), { signal: options.signal })
    options.hashed?.(BASE_FILE, written)
    out.base = {
      file: BASE_FILE,
      label: info.label,
      startLsn: info.startLsn,
      startSegment: info.startSegment,
      timeline: info.timeline,
      startTime: info.startTime,
      endTime: info.endTime,
      bytes,
      systemIdentifier,
      ...(databases ? { databases } : {})
    }
  } finally {
    rmSync(staging, { recursive: true, force: true })
  }
  if (db.walArchiveDir && out.base) {
    try {
      const w = await walWindow(db.walArchiveDir, baseInfo(out.base), cluster.binDir)
      out.wal = {
        archiveDir: db.walArchiveDir,
        earliest: w.earliest,
        latest: w.latest,
        continuous: w.continuous
      }
    } catch (e) {
      out.notes!.push(`WAL window unknown: ${messageOf(e)}`)
    }
  }
  return out
}

function baseInfo(base: NonNullable<ManifestDatabase['base']>, dir = ''): BaseBackupInfo {
  return { dir, ...base }
}

/** The window a backup's base backup can be recovered to with the WAL archived now; undefined without one. */
export async function recoverableWindow(
  service: Service,
  backup: BackupInfo
): Promise<WalWindow | undefined> {
  const db = service.config.database
  const base = backup.manifest.database?.base
  if (db?.kind !== 'postgres' || !db.walArchiveDir || !base || !existsSync(db.walArchiveDir)) return undefined
  return walWindow(db.walArchiveDir, baseInfo(base), db.binDir)
}

// ---------------------------------------------------------------------------------------------------------------
// Checks before a restore

/** Where a backup's base backup is extracted (and verified) next to the data directory, reused by the restore. */
function baseWorkDir(dataDir: string, backupId: string): string {
  return `${dataDir}.backout-base-${backupId}`
}

/**
 * Extracts the backup's base backup next to the data directory and runs pg_verifybackup on it, unless an earlier
 * check already did for exactly this archive (a marker holds its sha256). Returns the directory.
 */
async function preparedBase(
  cluster: Cluster,
  backup: BackupInfo,
  hashed?: Map<string, string>
): Promise<string> {
  const base = backup.manifest.database?.base
  if (!base) throw new Error('no base backup')
  try {
    return await prepareExtraction(
      path.join(backup.dir, base.file),
      baseWorkDir(cluster.dataDir, backup.id),
      manifestSha(backup, base.file) ?? '',
      {
        hashed: sha => hashed?.set(base.file, sha),
        check: async dir => {
          const problems = await verifyBaseBackup(dir, cluster.binDir)
          if (problems.length)
            throw new UserError(
              `base backup of ${backup.id} fails pg_verifybackup: ${problems.slice(0, 3).join('; ')} — pick another backup`,
              'backup_corrupt'
            )
        }
      }
    )
  } catch (e) {
    throw unusable(e, `base backup of ${backup.id}`)
  }
}

/** An extraction's failure as the operator reads it: a full disk, or a corrupt archive (a check's own words stay). */
function unusable(e: unknown, what: string): UserError {
  if (e instanceof UserError) return e
  if (e instanceof DiskFullError) return new UserError(e.message, 'disk_full')
  return new UserError(`${what} is corrupt: ${messageOf(e)} — pick another backup`, 'backup_corrupt')
}

/** Removes what preparedBase left (after a restore, or after a dry run's check). */
export function discardPreparedBase(service: Service, backupId: string): void {
  const db = service.config.database
  if (db?.kind !== 'postgres' || !db.dataDir) return
  discardExtraction(baseWorkDir(db.dataDir, backupId))
}

/** Whether a restore of this backup will be physical (base backup + WAL) rather than logical. */
export function restoresPhysically(service: Service, backup: BackupInfo): boolean {
  const db = service.config.database
  const decided = decidedRestorePath(backup)
  if (decided) return decided.method === 'physical'
  return db?.kind === 'postgres' && !!backup.manifest.database?.base && !!localCluster(db).cluster
}

/** The plan's words for the database restore of this backup (path, databases replaced, why); '' before pre-flight. */
export function describeRestorePath(backup: BackupInfo): string {
  const route = decidedRestorePath(backup)
  return route ? `; ${restorePathText(route)}` : ''
}

/** Decides (again, with the live cluster) whether this backup may be restored physically: see restore-path.ts. */
function routeFor(
  db: Postgres,
  backup: BackupInfo,
  cluster: Cluster | undefined,
  toTime?: string
): Promise<RestorePath> {
  return decideRestorePath({ backup, database: databaseName(db.url), url: db.url, cluster, toTime })
}

/** Where a backup's dump is extracted (and checked) ahead of a logical restore, reused by the restore. */
function dumpWorkDir(config: Config, backupId: string): string {
  return path.join(config.state.dir, `prepared-dump-${backupId}`)
}

/** The dump extracted by an earlier check of exactly this archive, if any. */
function readyPreparedDump(service: Service, backup: BackupInfo): string | undefined {
  const file = backup.manifest.database?.file
  return file ? readyExtraction(dumpWorkDir(service.config, backup.id), manifestSha(backup, file)) : undefined
}

/**
 * Extracts the backup's dump into the state directory, hashing the archive as it is read, so that a logical restore
 * later starts pg_restore at once: the unpacking happens while the service still runs, not during the downtime.
 */
async function preparedDump(
  service: Service,
  backup: BackupInfo,
  hashed?: Map<string, string>
): Promise<string> {
  const file = backup.manifest.database?.file
  if (!file) throw new Error('no dump')
  const archive = path.join(backup.dir, file)
  try {
    return await prepareExtraction(
      archive,
      dumpWorkDir(service.config, backup.id),
      manifestSha(backup, file) ?? '',
      {
        hashed: sha => hashed?.set(file, sha)
      }
    )
  } catch (e) {
    throw unusable(e, `database dump ${archive}`)
  }
}

/** Removes what preparedDump left (after a restore, a dry run, or a refusal). */
export function discardPreparedDump(service: Service, backupId: string): void {
  discardExtraction(dumpWorkDir(service.config, backupId))
}

/**
 * Waits for a base backup being prepared to settle (so that nothing is still being written when the run ends and
 * rollback() removes the prepared extractions), then returns the error to throw.
 */
async function settled(physical: Promise<string> | undefined, error: unknown): Promise<unknown> {
  if (physical) await physical.catch(() => undefined)
  return error
}

/**
 * Everything that can be checked about a backup's database before anything stops: the capture exists and matches
 * the configured kind; the dump is readable (pg_restore --list); the base backup extracts and passes
 * pg_verifybackup; the SQLite file passes integrity_check; and, for a point in time, the WAL archive runs unbroken
 * from the base backup past that time. Every failure is a UserError. Returns a one-line detail.
 */
export async function checkDatabaseBackup(
  service: Service,
  backup: BackupInfo,
  options: {
    toTime?: string
    log?: Logger
    /** Filled with the sha256 of the backup's files this check read in full (see BackupStore.verify). */
    hashed?: Map<string, string>
    /**
     * A logical restore follows (Level 3, Level 2's Method 2): extract the whole dump now, while the service still
     * runs, and keep it for restoreDatabase. Otherwise only toc.dat is extracted (the whole archive is still read).
     */
    prepareLogical?: boolean
    /** A dry run: nothing is written to the server (no commit, no WAL switch to archive the newest commits). */
    readOnly?: boolean
  } = {}
): Promise<string> {
  const db = service.config.database
  const m = backup.manifest.database
  if (!db) return 'no database configured'
  if (!m?.file || m.error)
    throw new UserError(
      `backup ${backup.id} holds no usable database capture${m?.error ? ` (${m.error})` : ''} — pick a backup taken by \`backout snapshot\``,
      'backup_incomplete'
    )
  if (m.kind !== db.kind)
    throw new UserError(
      `backup ${backup.id} holds a ${m.kind} database, the service uses ${db.kind}`,
      'backup_incomplete'
    )
  if (db.kind === 'sqlite') {
    if (options.toTime)
      throw new UserError(
        '--to-time needs PostgreSQL with a WAL archive; SQLite has no log to replay',
        'bad_argument'
      )
    const file = path.join(backup.dir, m.file)
    const check = await sqlite.integrityCheck(file)
    if (!check.ok)
      throw new UserError(
        `the SQLite backup in ${backup.id} fails integrity_check: ${check.problems.slice(0, 3).join('; ')}`,
        'backup_corrupt'
      )
    const foreign = await foreignBackup(db, backup)
    if (foreign) throw new UserError(foreign, 'backup_foreign')
    // The file is the one captured when it holds the rows and schema version counted at capture.
    if (m.rowCounts) {
      const counts = await sqlite.tableCounts(file)
      const differ = Object.entries(m.rowCounts)
        .filter(([t, n]) => counts[t] !== n)
        .map(([t, n]) => `${t}: ${counts[t] ?? 'no table'}, captured ${n}`)
      const version = await sqlite.schemaVersion(file)
      if (m.schemaVersion && version !== m.schemaVersion)
        differ.unshift(`schema version ${version ?? 'none'}, captured ${m.schemaVersion}`)
      if (differ.length)
        throw new UserError(
          `the SQLite database in backup ${backup.id} is not the one it captured (${differ.slice(0, 3).join('; ')}) — ` +
            'a copy of another database (or another moment) was put in its place. Nothing was changed; pick another backup',
          'backup_foreign'
        )
    }
    return `SQLite backup passes integrity_check${m.rowCounts ? ', rows and schema as captured' : ''}`
  }
  await convergeInterruptedRestore(service, options.log)
  // The dump's check and the base backup's preparation read different files: both at once.
  const { cluster, why } = localCluster(db)
  const route = await routeFor(db, backup, cluster, options.toTime)
  const physical =
    m.base && cluster && route.method === 'physical'
      ? preparedBase(cluster, backup, options.hashed)
      : undefined
  physical?.catch(() => undefined) // awaited below; handled now so that an early failure is not "unhandled"
  let toc: Awaited<ReturnType<typeof readDumpToc>>
  try {
    const dumpPath =
      options.prepareLogical && !physical
        ? await preparedDump(service, backup, options.hashed)
        : path.join(backup.dir, m.file)
    toc = await readDumpToc({ file: dumpPath, binDir: db.binDir })
  } catch (e) {
    throw await settled(physical, e)
  }
  if (toc.archiveSha256) options.hashed?.set(m.file, toc.archiveSha256)
  const recorded = m.identity
  if (recorded?.dumpTocSha256 && toc.tocSha256 && toc.tocSha256 !== recorded.dumpTocSha256)
    throw await settled(
      physical,
      new UserError(
        `the database dump in backup ${backup.id} is not the one it captured: its table of contents differs ` +
          `(this one dumps database "${toc.dbname ?? '?'}", written ${toc.createdAt ?? 'at an unknown time'}; the backup ` +
          `captured "${recorded.database ?? '?'}" at ${m.capturedAt ?? '?'}) — a dump of another database (or another ` +
          'moment) was put in its place. Nothing was changed; pick another backup (backout list)',
        'backup_foreign'
      )
    )
  const parts = [
    `dump readable (${toc.entries} TOC entries, ${toc.tables.length} tables${recorded?.dumpTocSha256 ? ', the one captured' : ''})`
  ]
  if (!m.base || !cluster || !physical) {
    if (options.toTime)
      throw new UserError(
        `--to-time needs a physical base backup and the WAL archive: ${m.base ? (why ?? '') : `backup ${backup.id} has no base backup`}`,
        'wal_missing'
      )
    return parts
      .concat(m.base && !cluster ? [`base backup not usable here (${why ?? '?'}): logical restore`] : [], [
        restorePathText(route)
      ])
      .join('; ')
  }
  const prepared = await physical
  parts.push('base backup passes pg_verifybackup')
  const baseId = await systemIdentifierOf(prepared, cluster.binDir)
  if (m.base.systemIdentifier && baseId !== m.base.systemIdentifier)
    throw new UserError(
      `the base backup in backup ${backup.id} is a copy of another database cluster: system identifier ${baseId}, the ` +
        `backup captured ${m.base.systemIdentifier}. Nothing was changed; pick another backup (backout list)`,
      'backup_foreign'
    )
  const liveId = await systemIdentifierOf(cluster.dataDir, cluster.binDir).catch(() => undefined)
  if (liveId && liveId !== baseId) {
    if (options.toTime)
      throw new UserError(
        `backup ${backup.id} is of another cluster (system identifier ${baseId}) than the one running now (${liveId}): ` +
          "this cluster's WAL archive cannot be replayed onto it, so --to-time is not possible — restore it without --to-time, or pick a backup of this cluster",
        'backup_foreign'
      )
    parts.push(
      `base backup is of cluster ${baseId}, the running cluster is ${liveId} (re-created since?): the restore brings back ${baseId}`
    )
  }
  if (options.toTime) {
    if (!db.walArchiveDir)
      throw new UserError(
        '--to-time needs database.walArchiveDir (the WAL archive) in backout.yml',
        'wal_missing'
      )
    const target = new Date(options.toTime)
    if (target.getTime() > Date.now())
      throw new UserError(`--to-time ${target.toISOString()} is in the future`, 'bad_target')
    const running = clusterPid(cluster.dataDir) !== undefined
    if (running && !options.readOnly) {
      try {
        await flushWalToArchive(cluster)
      } catch (e) {
        options.log?.warn(`could not flush the current WAL to the archive: ${messageOf(e)}`)
      }
    }
    // Along the running cluster's own timeline history (an undone attempt's newer timeline is not it).
    const timeline = await dataDirTimeline(cluster.dataDir, cluster.binDir)
    const w = await walWindow(db.walArchiveDir, baseInfo(m.base), cluster.binDir, { timeline })
    if (target < new Date(w.earliest))
      throw new UserError(
        `--to-time ${target.toISOString()} is before backup ${backup.id}'s base backup finished (${w.earliest}) — pick an older backup`,
        'bad_target'
      )
    const c = await checkWalContinuity(db.walArchiveDir, m.base.startSegment, target, cluster.binDir, {
      timeline
    })
    // A dry run does not switch WAL: the newest commits of the running cluster may not be archived yet.
    if (options.readOnly && running && c.continuous && !c.reachesTarget && !c.abandoned)
      parts.push(
        `WAL continuous from ${m.base.startSegment} to ${c.lastSegment ?? '?'} (newest archived commit ${c.latestCommit ?? '?'}); ` +
          `the run switches WAL first, so that the commits up to ${target.toISOString()} are archived`
      )
    else if (!c.continuous || !c.reachesTarget)
      throw new UserError(
        `point-in-time recovery to ${target.toISOString()} is not possible: ${c.problems.join('; ')}`,
        c.abandoned ? 'bad_target' : 'wal_gap'
      )
    else
      parts.push(
        `WAL continuous from ${m.base.startSegment} to ${c.lastSegment ?? '?'} (newest commit ${c.latestCommit ?? '?'})`
      )
  }
  parts.push(restorePathText(route))
  return parts.join('; ')
}

// ---------------------------------------------------------------------------------------------------------------
// Restore

export interface DatabaseRestoreResult {
  /** The moment the restored data is as of: the recovery target, or when the backup captured it. ISO-8601. */
  restoredTo: string
  walReplayed: boolean
  detail: string
  method: 'physical' | 'logical' | 'sqlite'
  /** Row counts after the restore. */
  rowCounts?: Record<string, number>
  /** Where the replaced database went (kept for forensics). */
  keptAside?: string
}

/**
 * Restores the service's database from a backup. PostgreSQL: physical when the backup has a base backup and the
 * cluster's data directory is reachable (data directory swapped atomically, the old one kept; WAL replayed to
 * toTime, failing loudly when PostgreSQL does not reach it; without toTime, to the end of the base backup);
 * otherwise logical (pg_restore -j into a side database, swapped in, the replaced one kept). SQLite: the VBRPG
 * runbook's section 3 (bad file moved aside, restore, integrity_check, foreign_key_check). Re-running after an
 * interruption converges: an interrupted physical swap is undone first, a partial side database is dropped.
 */
export async function restoreDatabase(
  service: Service,
  backup: BackupInfo,
  options: { log: Logger; signal?: AbortSignal; toTime?: string }
): Promise<DatabaseRestoreResult> {
  const db = service.config.database
  const m = backup.manifest.database
  const { log } = options
  if (!db)
    return {
      restoredTo: backup.manifest.createdAt,
      walReplayed: false,
      detail: 'no database configured',
      method: 'logical'
    }
  if (!m?.file || m.kind !== db.kind)
    throw new UserError(
      `backup ${backup.id} holds no ${db.kind} database capture — pick another backup`,
      'backup_incomplete'
    )
  const capturedAt = m.capturedAt ?? backup.manifest.createdAt

  if (db.kind === 'sqlite') {
    const res = await sqlite.restore(db.path, path.join(backup.dir, m.file), { logger: log })
    return {
      restoredTo: capturedAt,
      walReplayed: false,
      method: 'sqlite',
      rowCounts: res.counts,
      keptAside: res.movedAside[0],
      detail:
        `${db.path} restored from ${backup.id}` +
        (res.movedAside.length ? `; previous file kept as ${path.basename(res.movedAside[0] ?? '')}` : '') +
        `; integrity_check ok; ${res.foreignKeyProblems.length} foreign key problems`
    }
  }

  await convergeInterruptedRestore(service, log)
  const { cluster } = localCluster(db)
  // Decided again now: a database created since the pre-flight must not be swept away either.
  const route = await routeFor(db, backup, cluster, options.toTime)
  if (m.base && cluster && route.method === 'physical') {
    const dir = await preparedBase(cluster, backup)
    const res = await physicalRestore({
      cluster,
      logFile: clusterLog(service.config),
      backupDir: dir,
      // dir is preparedBase's scratch extraction (verified, discarded afterwards): renamed into place, not copied.
      consumeBackupDir: true,
      walArchiveDir: db.walArchiveDir,
      targetTime: options.toTime,
      logger: log
    })
    discardPreparedBase(service, backup.id)
    const restoredTo = options.toTime
      ? new Date(options.toTime).toISOString()
      : (m.base.endTime ?? m.base.startTime)
    return {
      restoredTo,
      walReplayed: options.toTime !== undefined,
      method: 'physical',
      keptAside: res.previousDataDir,
      detail:
        `physical restore of ${backup.id}'s base backup in ${(res.durationMs / 1000).toFixed(1)} s` +
        (res.stoppedBefore
          ? `; WAL replayed to ${options.toTime}, recovery stopped before xid ${res.stoppedBefore.xid} (${res.stoppedBefore.time})`
          : '; recovered to the end of the base backup') +
        (res.previousDataDir ? `; previous data directory kept at ${res.previousDataDir}` : '') +
        `; ${restorePathText(route)}`
    }
  }

  if (options.toTime)
    throw new UserError('--to-time needs a physical base backup and the WAL archive', 'wal_missing')
  // A logical restore needs the server up; it may be down after an interrupted physical attempt.
  if (cluster && !clusterPid(cluster.dataDir)) await startCluster(cluster, clusterLog(service.config))
  const database = databaseName(db.url)
  // The dump the pre-flight check extracted (and hashed) while the service ran, else the archive itself.
  const prepared = readyPreparedDump(service, backup)
  let res: Awaited<ReturnType<typeof logicalRestore>>
  try {
    res = await logicalRestore({
      url: urlForDatabase(db.url, 'postgres'),
      database,
      file: prepared ?? path.join(backup.dir, m.file),
      binDir: db.binDir,
      workDir: path.join(service.config.state.dir),
      keepReplaced: true,
      logger: log
    })
  } finally {
    discardPreparedDump(service, backup.id)
  }
  return {
    restoredTo: capturedAt,
    walReplayed: false,
    method: 'logical',
    rowCounts: res.rowCounts,
    keptAside: res.keptAs,
    detail:
      `logical restore of ${backup.id} (${res.toc.tables.length} tables) in ${(res.durationMs / 1000).toFixed(1)} s` +
      (prepared ? ' from the dump unpacked during the pre-flight' : '') +
      (res.keptAs ? `; the replaced database kept as ${res.keptAs}` : '') +
      `; ${restorePathText(route)}`
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Restore drill (backout verify)

/**
 * Restores a backup's database where it harms nothing and compares the row counts with those recorded at capture:
 * PostgreSQL into a scratch database on the same server (created, restored, counted, dropped); SQLite into a temp
 * file (integrity_check, foreign_key_check, counts). Returns the problems (empty when the drill passed) and a detail.
 */
export async function restoreDrill(
  service: Service,
  backup: BackupInfo
): Promise<{ problems: string[]; detail: string }> {
  const db = service.config.database
  const m = backup.manifest.database
  if (!db || !m) return { problems: [], detail: 'no database in this backup' }
  if (!m.file || m.error)
    return { problems: [`no usable database capture${m.error ? `: ${m.error}` : ''}`], detail: '' }
  const problems: string[] = []
  const compare = (got: Record<string, number>): void => {
    for (const [table, want] of Object.entries(m.rowCounts ?? {}))
      if (got[table] !== want)
        problems.push(`${table}: ${got[table] ?? 'missing'} rows restored, ${want} recorded`)
  }
  if (m.kind === 'sqlite') {
    const tmp = await mkdtemp(path.join(path.dirname(backup.dir), '.verify-'))
    try {
      const copy = path.join(tmp, 'drill.db')
      await runCommand(['cp', path.join(backup.dir, m.file), copy])
      const check = await sqlite.integrityCheck(copy)
      if (!check.ok) problems.push(`integrity_check: ${check.problems.slice(0, 3).join('; ')}`)
      else {
        const fk = await sqlite.foreignKeyCheck(copy)
        if (fk.length) problems.push(`foreign_key_check: ${fk.length} rows`)
        compare(await sqlite.tableCounts(copy))
      }
      return {
        problems,
        detail: `SQLite copy: integrity_check, foreign_key_check and ${Object.keys(m.rowCounts ?? {}).length} table counts`
      }
    } finally {
      await rm(tmp, { recursive: true, force: true })
    }
  }
  if (db.kind !== 'postgres')
    return { problems: ['the backup holds PostgreSQL, the service uses SQLite'], detail: '' }
  const scratch = `${databaseName(db.url).slice(0, 30)}_backout_verify_${process.pid}`
  const admin = urlForDatabase(db.url, 'postgres')
  const started = Date.now()
  try {
    const res = await logicalRestore({
      url: admin,
      database: scratch,
      file: path.join(backup.dir, m.file),
      binDir: db.binDir,
      workDir: path.dirname(backup.dir)
    })
    compare(res.rowCounts)
    return {
      problems,
      detail: `restored into scratch database ${scratch} in ${((Date.now() - started) / 1000).toFixed(1)} s; ${Object.keys(res.rowCounts).length} tables counted`
    }
  } catch (e) {
    problems.push(`restore drill failed: ${messageOf(e)}`)
    return { problems, detail: '' }
  } finally {
    await pgQuery(admin, `DROP DATABASE IF EXISTS "${scratch}" WITH (FORCE)`).catch((e: unknown) =>
      service.log.warn(`could not drop the scratch database ${scratch}: ${messageOf(e)}`)
    )
  }
}

/** Extracts the base backup into a temp dir next to the backups and runs pg_verifybackup on it. */
export async function baseBackupDrill(service: Service, backup: BackupInfo): Promise<string[]> {
  const base = backup.manifest.database?.base
  const db = service.config.database
  if (!base || db?.kind !== 'postgres') return []
  const tmp = await mkdtemp(path.join(path.dirname(backup.dir), '.verify-'))
  try {
    await untarZstd(path.join(backup.dir, base.file), path.join(tmp, 'base'))
    return await verifyBaseBackup(path.join(tmp, 'base'), db.binDir)
  } catch (e) {
    return [`base backup does not extract: ${messageOf(e)}`]
  } finally {
    await rm(tmp, { recursive: true, force: true })
  }
}

/** Extracts a data archive into a temp dir to prove it reads (zstd checks its frame checksum), then removes it. */
export async function extractDrill(file: string, scratchParent: string): Promise<void> {
  const tmp = await mkdtemp(path.join(scratchParent, '.verify-'))
  try {
    await untarZstd(file, tmp)
  } catch (e) {
    throw new OperationError(`${path.basename(file)} does not extract: ${messageOf(e)}`, 'backup_corrupt')
  } finally {
    await rm(tmp, { recursive: true, force: true })
  }
}
