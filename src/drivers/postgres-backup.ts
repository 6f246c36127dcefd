import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
  rmSync,
  openSync,
  readSync,
  closeSync,
  fstatSync
} from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import path from 'node:path'
import { Client } from 'pg'
import { OperationError, UserError } from '../core/errors'
import type { Logger } from '../core/logger'
import { formatBackupId } from '../core/run-record'
import { freeSpace, formatBytes, sha256File, tarZstd, untarZstd, type ZstdOptions } from './archive'
import { runChecked, runCommand } from './exec'
import {
  type Cluster,
  asPostgresUser,
  chownForPostgres,
  clusterPid,
  findPgBinDir,
  mkdirForPostgres,
  startCluster,
  stopCluster
} from './postgres-cluster'
import { unusedPath } from './paths'
import { pgCommandConnection } from './postgres/credentials'
import { pgTime } from './postgres/pg-time'
import { removeRecoverySettings, writeRecoverySettings } from './postgres/recovery-conf'
import {
  crashPoint,
  finishSwap,
  readSwapJournal,
  swapIn,
  swapJournalFile,
  swapRename,
  undoSwap
} from './postgres/restore-swap'
import {
  checkWalContinuity as walContinuity,
  dataDirTimeline,
  type WalContinuity
} from './postgres/timelines'

export type { WalContinuity }

/**
 * PostgreSQL backups and restores: a logical dump (pg_dump directory format, parallel, streamed through zstd
 * into one file) with the row counts and schema version taken in the dump's own snapshot; a logical restore
 * into a side database swapped in only when complete; a physical base backup (pg_basebackup); WAL archiving;
 * and a physical restore with point-in-time recovery that checks PostgreSQL really reached the target.
 */

function requireBinDir(binDir?: string): string {
  const dir = binDir ?? findPgBinDir()
  if (!dir)
    throw new UserError(
      'PostgreSQL binaries not found — install postgresql-15 or set BACKOUT_PG_BIN',
      'missing_tool'
    )
  return dir
}

/** A connection URL for another database on the same server (postgresql://… URLs only). */
export function urlForDatabase(url: string, database: string): string {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    throw new UserError(`database url "${redact(url)}" is not a postgresql:// URL`, 'bad_config')
  }
  u.pathname = `/${encodeURIComponent(database)}`
  return u.toString()
}

function databaseOf(url: string): string {
  const name = decodeURIComponent(new URL(url).pathname.replace(/^\//, ''))
  return name || 'postgres'
}

/** The URL without its password, for messages. */
export function redact(url: string): string {
  try {
    const u = new URL(url)
    if (u.password) u.password = '***'
    return u.toString()
  } catch {
    return url.replace(/:[^:@/]*@/, ':***@')
  }
}

async function withClient<T>(url: string, fn: (c: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: url, connectionTimeoutMillis: 10_000 })
  // A server that goes away (a recovery that fails, a stop) must fail the query, not crash the process with an
  // unhandled 'error' event.
  client.on('error', () => undefined)
  try {
    await client.connect()
  } catch (e) {
    await client.end().catch(() => undefined) // never leave a half-open connection behind a failed attempt
    throw e
  }
  try {
    return await fn(client)
  } finally {
    await client.end()
  }
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`
}

function quoteLiteral(value: string): string {
  return `'${value.replace(/'/g, "''")}'`
}

// ---------------------------------------------------------------------------------------------------------------
// Row counts and schema version

async function userTables(client: Client): Promise<string[]> {
  const res = await client.query<{ name: string }>(
    `SELECT n.nspname || '.' || c.relname AS name
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
        AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
      ORDER BY 1`
  )
  return res.rows.map(r => r.name)
}

function splitTable(name: string): [string, string] {
  const dot = name.indexOf('.')
  return dot < 0 ? ['public', name] : [name.slice(0, dot), name.slice(dot + 1)]
}

async function countRows(client: Client, tables?: readonly string[]): Promise<Record<string, number>> {
  const names = tables ? tables.map(t => splitTable(t).join('.')) : await userTables(client)
  const counts: Record<string, number> = {}
  for (const name of names) {
    const [schema, table] = splitTable(name)
    try {
      const res = await client.query<{ n: string }>(
        `SELECT count(*) AS n FROM ${quoteIdent(schema)}.${quoteIdent(table)}`
      )
      counts[name] = Number(res.rows[0]?.n ?? 0)
    } catch (e) {
      throw new OperationError(
        `cannot count rows of ${name}: ${e instanceof Error ? e.message : String(e)}`,
        'count_failed'
      )
    }
  }
  return counts
}

/** Exact row counts (count(*)) of the given tables ("schema.table" or "table" in public), or of every user table. */
export async function rowCounts(url: string, tables?: readonly string[]): Promise<Record<string, number>> {
  return withClient(url, c => countRows(c, tables))
}

export interface SchemaVersion {
  source: 'schema_migrations' | 'alembic_version'
  version: string
}

async function readSchemaVersion(client: Client): Promise<SchemaVersion | undefined> {
  const found = await client.query<{ t: string | null; a: string | null }>(
    `SELECT to_regclass('schema_migrations')::text AS t, to_regclass('alembic_version')::text AS a`
  )
  const row = found.rows[0]
  if (row?.t) {
    const res = await client.query<{ v: string | null }>(
      `SELECT version::text AS v FROM schema_migrations ORDER BY length(version::text) DESC, version::text DESC LIMIT 1`
    )
    const v = res.rows[0]?.v
    if (v) return { source: 'schema_migrations', version: v }
  }
  if (row?.a) {
    const res = await client.query<{ v: string }>(`SELECT version_num AS v FROM alembic_version ORDER BY 1`)
    if (res.rows.length > 0) return { source: 'alembic_version', version: res.rows.map(r => r.v).join(',') }
  }
  return undefined
}

/** The schema version: the highest schema_migrations version, else the alembic revision(s); undefined if neither. */
export async function schemaVersion(url: string): Promise<SchemaVersion | undefined> {
  return withClient(url, readSchemaVersion)
}

// ---------------------------------------------------------------------------------------------------------------
// Logical dump and restore

export interface LogicalDumpOptions {
  /** postgresql:// URL of the database to dump. */
  url: string
  binDir?: string
  /** The one output file (tar of the pg_dump directory, zstd-compressed). */
  outFile: string
  /** pg_dump parallel jobs (default 2). */
  jobs?: number
  /** Where the uncompressed dump directory is staged; default: next to outFile. */
  workDir?: string
  zstd?: ZstdOptions
}

export interface LogicalDumpResult {
  file: string
  size: number
  sha256: string
  format: 'pg_dump-directory.tar.zst'
  database: string
  serverVersion: string
  /** When the dump's snapshot was taken (the data is exactly as of this instant), ISO-8601. */
  snapshotTime: string
  /** sha256 of the dump's toc.dat: identifies this very dump (readDumpToc returns the same for it). */
  tocSha256: string
  /** The cluster's system identifier, where the role may read it (pg_control_system()). */
  systemIdentifier?: string
  /** Exact row counts per user table, counted in the dump's own snapshot. */
  rowCounts: Record<string, number>
  schemaVersion?: SchemaVersion
  dumpMs: number
  compressMs: number
  durationMs: number
}

/**
 * pg_dump -Fd -j N -Z0 into a staging directory, then tar | zstd into outFile (hashed while written). The row
 * counts and schema version are read in a REPEATABLE READ transaction whose snapshot pg_dump shares
 * (--snapshot), so they describe exactly the data in the dump even while the application writes.
 */
export async function logicalDump(options: LogicalDumpOptions): Promise<LogicalDumpResult> {
  const started = Date.now()
  const binDir = requireBinDir(options.binDir)
  const jobs = options.jobs ?? 2
  const workDir = options.workDir ?? path.dirname(options.outFile)
  mkdirSync(workDir, { recursive: true })
  const staging = await mkdtemp(path.join(workDir, '.pg_dump-'))
  const client = new Client({ connectionString: options.url, connectionTimeoutMillis: 10_000 })
  try {
    await client.connect()
  } catch (e) {
    await rm(staging, { recursive: true, force: true })
    throw new OperationError(
      `cannot connect to ${redact(options.url)} to dump it: ${e instanceof Error ? e.message : String(e)}`,
      'db_unreachable'
    )
  }
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
    const snap = await client.query<{ id: string; at: Date; v: string; db: string }>(
      `SELECT pg_export_snapshot() AS id, now() AS at, current_setting('server_version') AS v, current_database() AS db`
    )
    const s = snap.rows[0]
    if (!s) throw new OperationError('pg_export_snapshot returned nothing', 'dump_failed')
    const counts = await countRows(client)
    const version = await readSchemaVersion(client)
    const systemIdentifier = await client
      .query<{ id: string }>('SELECT system_identifier::text AS id FROM pg_control_system()')
      .then(r => r.rows[0]?.id)
      .catch(() => undefined)
    const dumpDir = path.join(staging, 'dump')
    const dumpStarted = Date.now()
    const conn = pgCommandConnection(options.url)
    const res = await runCommand(
      [
        path.join(binDir, 'pg_dump'),
        '-Fd',
        '-j',
        String(jobs),
        '-Z0',
        '--no-sync',
        `--snapshot=${s.id}`,
        '-f',
        dumpDir,
        '-d',
        conn.url
      ],
      { env: conn.env }
    )
    if (res.code !== 0)
      throw new OperationError(
        `pg_dump of ${s.db} failed (exit ${res.code}): ${res.stderr.trim().split('\n').slice(-5).join('\n')}`,
        'dump_failed'
      )
    const dumpMs = Date.now() - dumpStarted
    await client.query('COMMIT')
    const tocSha256 = await sha256File(path.join(dumpDir, 'toc.dat'))
    const written = await tarZstd(dumpDir, options.outFile, options.zstd)
    return {
      file: written.file,
      size: written.size,
      sha256: written.sha256,
      format: 'pg_dump-directory.tar.zst',
      database: s.db,
      serverVersion: s.v,
      snapshotTime: s.at.toISOString(),
      tocSha256,
      ...(systemIdentifier ? { systemIdentifier } : {}),
      rowCounts: counts,
      schemaVersion: version,
      dumpMs,
      compressMs: written.durationMs,
      durationMs: Date.now() - started
    }
  } finally {
    await client.end().catch(() => undefined)
    await rm(staging, { recursive: true, force: true })
  }
}

export interface DumpToc {
  /** Entries in the dump's table of contents. */
  entries: number
  /** "schema.table" of every TABLE DATA entry. */
  tables: string[]
  /** From the header: the database dumped, and when pg_dump wrote the archive (as printed, e.g. "… UTC"). */
  dbname?: string
  createdAt?: string
  /** sha256 of toc.dat: which dump this is (it holds the creation time and every entry). */
  tocSha256?: string
  /** sha256 of the .tar.zst read to list it (the whole file is read and hashed on the way). */
  archiveSha256?: string
}

function parseToc(listing: string): DumpToc {
  const lines = listing.split('\n').filter(l => l.trim() && !l.startsWith(';'))
  const tables: string[] = []
  for (const l of lines) {
    const m = /^\d+; \d+ \d+ TABLE DATA (\S+) (\S+) /.exec(l)
    if (m) tables.push(`${m[1]}.${m[2]}`)
  }
  const dbname = /^;\s+dbname: (.*)$/m.exec(listing)?.[1]?.trim()
  const createdAt = /^; Archive created at (.*)$/m.exec(listing)?.[1]?.trim()
  return { entries: lines.length, tables, ...(dbname ? { dbname } : {}), ...(createdAt ? { createdAt } : {}) }
}

/** The system identifier initdb gave a cluster (kept by its base backups and physical restores), via pg_controldata. */
export async function systemIdentifierOf(dataDir: string, binDir?: string): Promise<string> {
  const res = await runCommand([path.join(requireBinDir(binDir), 'pg_controldata'), dataDir], {
    env: { ...process.env, LC_ALL: 'C' }
  })
  const id = /^Database system identifier:\s+(\d+)$/m.exec(res.stdout)?.[1]
  if (res.code !== 0 || !id)
    throw new OperationError(
      `pg_controldata ${dataDir} gave no system identifier: ${(res.stderr || res.stdout).trim().split('\n')[0] ?? ''}`,
      'backup_corrupt'
    )
  return id
}

async function listDump(binDir: string, dumpPath: string, what: string): Promise<DumpToc> {
  const res = await runCommand([path.join(binDir, 'pg_restore'), '--list', dumpPath])
  if (res.code !== 0)
    throw new UserError(
      `the database dump ${what} is not readable by pg_restore --list: ${res.stderr.trim().split('\n').slice(-3).join(' ')} ` +
        '— pick another backup (backout list) or run backout verify on it',
      'backup_corrupt'
    )
  const toc = parseToc(res.stdout)
  if (toc.entries === 0)
    throw new UserError(
      `the database dump ${what} has an empty table of contents — pick another backup`,
      'backup_corrupt'
    )
  return toc
}

/**
 * Checks that a dump is readable without restoring it: for a .tar.zst the whole archive is decompressed
 * (zstd verifies its checksum) and only toc.dat is extracted for pg_restore --list. Throws UserError otherwise.
 */
export async function readDumpToc(options: {
  file: string
  binDir?: string
  workDir?: string
}): Promise<DumpToc> {
  const binDir = requireBinDir(options.binDir)
  const { file } = options
  if (!existsSync(file))
    throw new UserError(
      `database dump ${file} does not exist — pick another backup (backout list)`,
      'backup_missing'
    )
  if (statSync(file).isDirectory() || !file.endsWith('.zst')) {
    const toc = await listDump(binDir, file, file)
    const tocFile = path.join(file, 'toc.dat')
    return existsSync(tocFile) ? { ...toc, tocSha256: await sha256File(tocFile) } : toc
  }
  const tmp = await mkdtemp(path.join(options.workDir ?? path.dirname(file), '.toc-'))
  try {
    let archiveSha256: string
    try {
      archiveSha256 = (await untarZstd(file, tmp, { members: ['./toc.dat'] })).sha256
    } catch (e) {
      throw new UserError(
        `database dump ${file} is corrupt: ${e instanceof Error ? e.message : String(e)}`,
        'backup_corrupt'
      )
    }
    const toc = await listDump(binDir, tmp, file)
    return { ...toc, tocSha256: await sha256File(path.join(tmp, 'toc.dat')), archiveSha256 }
  } finally {
    await rm(tmp, { recursive: true, force: true })
  }
}

export interface LogicalRestoreOptions {
  /** postgresql:// URL of any database on the server, used for maintenance (e.g. …/postgres). */
  url: string
  /** The database to replace. */
  database: string
  /** A file from logicalDump, a pg_dump directory, or a custom-format dump. */
  file: string
  jobs?: number
  binDir?: string
  /** Where the dump is extracted; default next to the file. */
  workDir?: string
  /** Keep the replaced database as <database>_replaced_<id> instead of dropping it. */
  keepReplaced?: boolean
  now?: () => Date
  logger?: Logger
}

export interface LogicalRestoreResult {
  database: string
  /** The replaced database's new name, when kept. */
  keptAs?: string
  toc: DumpToc
  rowCounts: Record<string, number>
  schemaVersion?: SchemaVersion
  extractMs: number
  restoreMs: number
  durationMs: number
}

/** A database name of at most 63 bytes with a suffix. */
function sideName(database: string, suffix: string): string {
  let base = database
  while (Buffer.byteLength(base + suffix) > 63) base = base.slice(0, -1)
  return base + suffix
}

/**
 * Restores a dump over a database. Refuses (UserError, nothing touched) unless the dump extracts and
 * pg_restore --list reads it. Then restores with pg_restore -j into a side database created like the original;
 * only when that fully succeeded are the original's connections closed and terminated and the two swapped by
 * rename, so a failed restore leaves the original as it was. The replaced database is dropped (or kept).
 */
export async function logicalRestore(options: LogicalRestoreOptions): Promise<LogicalRestoreResult> {
  const started = Date.now()
  const binDir = requireBinDir(options.binDir)
  const { database, file } = options
  const log = options.logger
  const jobs = options.jobs ?? 2
  if (!existsSync(file))
    throw new UserError(
      `database dump ${file} does not exist — pick another backup (backout list)`,
      'backup_missing'
    )
  if (database === databaseOf(options.url))
    throw new UserError(
      `logicalRestore: the maintenance url points at ${database}, the database being replaced — use …/postgres`,
      'bad_config'
    )

  let dumpPath = file
  let tmp: string | undefined
  const extractStarted = Date.now()
  try {
    if (!statSync(file).isDirectory() && file.endsWith('.zst')) {
      tmp = await mkdtemp(path.join(options.workDir ?? path.dirname(file), '.restore-'))
      dumpPath = path.join(tmp, 'dump')
      try {
        await untarZstd(file, dumpPath)
      } catch (e) {
        throw new UserError(
          `database dump ${file} is corrupt: ${e instanceof Error ? e.message : String(e)}`,
          'backup_corrupt'
        )
      }
    }
    const extractMs = Date.now() - extractStarted
    const toc = await listDump(binDir, dumpPath, file)

    const side = sideName(database, '_backout_restoring')
    const restoreStarted = Date.now()
    await withClient(options.url, async c => {
      // A side database left by an interrupted run is only ever a partial restore: drop it.
      await c.query(`DROP DATABASE IF EXISTS ${quoteIdent(side)} WITH (FORCE)`)
      const orig = await c.query<{ enc: string; collate: string; ctype: string; owner: string }>(
        `SELECT pg_encoding_to_char(d.encoding) AS enc, d.datcollate AS collate, d.datctype AS ctype, r.rolname AS owner
           FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname = $1`,
        [database]
      )
      const o = orig.rows[0]
      const like = o
        ? ` ENCODING ${quoteLiteral(o.enc)} LC_COLLATE ${quoteLiteral(o.collate)} LC_CTYPE ${quoteLiteral(o.ctype)} OWNER ${quoteIdent(o.owner)}`
        : ''
      await c.query(`CREATE DATABASE ${quoteIdent(side)} TEMPLATE template0${like}`)
    })
    log?.info(`pg_restore -j ${jobs} of ${path.basename(file)} into ${side}`)
    const conn = pgCommandConnection(urlForDatabase(options.url, side))
    const res = await runCommand(
      [path.join(binDir, 'pg_restore'), '-j', String(jobs), '--exit-on-error', '-d', conn.url, dumpPath],
      { env: conn.env }
    )
    if (res.code !== 0) {
      await withClient(options.url, c =>
        c.query(`DROP DATABASE IF EXISTS ${quoteIdent(side)} WITH (FORCE)`)
      ).catch(() => undefined)
      throw new OperationError(
        `pg_restore of ${file} failed (exit ${res.code}); ${database} was not touched: ` +
          res.stderr.trim().split('\n').slice(-5).join('\n'),
        'restore_failed'
      )
    }
    const restoreMs = Date.now() - restoreStarted

    const stampSuffix = `_replaced_${formatBackupId((options.now ?? (() => new Date()))()).replace('-', '_')}`
    let keptAs: string | undefined
    await withClient(options.url, async c => {
      // Never the name of a database kept by an earlier restore in the same second (a resumed run).
      let replaced = sideName(database, stampSuffix)
      for (
        let i = 2;
        (await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [replaced])).rowCount;
        i++
      )
        replaced = sideName(database, `${stampSuffix}_${i}`)
      const exists = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [database])
      if (exists.rowCount) {
        await c.query(`ALTER DATABASE ${quoteIdent(database)} ALLOW_CONNECTIONS false`)
        try {
          await c.query(
            'SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()',
            [database]
          )
          await c.query(`ALTER DATABASE ${quoteIdent(database)} RENAME TO ${quoteIdent(replaced)}`)
        } catch (e) {
          await c
            .query(`ALTER DATABASE ${quoteIdent(database)} ALLOW_CONNECTIONS true`)
            .catch(() => undefined)
          throw new OperationError(
            `cannot take ${database} offline to swap in the restored copy (${e instanceof Error ? e.message : String(e)}); ` +
              `the restored copy is in ${side} — stop the application and run again`,
            'restore_failed'
          )
        }
      }
      await c.query(`ALTER DATABASE ${quoteIdent(side)} RENAME TO ${quoteIdent(database)}`)
      if (exists.rowCount) {
        if (options.keepReplaced) {
          await c.query(`ALTER DATABASE ${quoteIdent(replaced)} ALLOW_CONNECTIONS true`)
          keptAs = replaced
        } else await c.query(`DROP DATABASE ${quoteIdent(replaced)} WITH (FORCE)`)
      }
    })
    const target = urlForDatabase(options.url, database)
    const counts = await rowCounts(target)
    const version = await schemaVersion(target)
    return {
      database,
      keptAs,
      toc,
      rowCounts: counts,
      schemaVersion: version,
      extractMs,
      restoreMs,
      durationMs: Date.now() - started
    }
  } finally {
    if (tmp) await rm(tmp, { recursive: true, force: true })
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Base backup and WAL archiving

export interface BaseBackupInfo {
  dir: string
  label: string
  /** e.g. 0/2000028 */
  startLsn: string
  /** The WAL segment file the backup starts in, e.g. 000000010000000000000002. */
  startSegment: string
  timeline: number
  /** ISO-8601 */
  startTime: string
  /** When pg_basebackup finished (the earliest time this backup can be recovered to), ISO-8601. */
  endTime?: string
  durationMs?: number
}

/** Reads backup_label of a plain-format base backup. */
export function readBaseBackupLabel(dir: string): BaseBackupInfo {
  const file = path.join(dir, 'backup_label')
  if (!existsSync(file))
    throw new UserError(`${dir} is not a base backup: it has no backup_label`, 'backup_corrupt')
  const text = readFileSync(file, 'utf8')
  const field = (name: string): string | undefined =>
    new RegExp(`^${name}: (.*)$`, 'm').exec(text)?.[1]?.trim()
  const start = /^START WAL LOCATION: (\S+) \(file ([0-9A-F]{24})\)$/m.exec(text)
  const startTime = field('START TIME')
  if (!start?.[1] || !start[2] || !startTime)
    throw new UserError(`${file} is not a backup label PostgreSQL wrote`, 'backup_corrupt')
  return {
    dir,
    label: field('LABEL') ?? '',
    startLsn: start[1],
    startSegment: start[2],
    timeline: Number(field('START TIMELINE') ?? parseInt(start[2].slice(0, 8), 16)),
    startTime: pgTime(startTime)
  }
}

/**
 * pg_basebackup of a running cluster into outDir: plain format, WAL streamed alongside (-X stream, so the backup
 * is consistent on its own), checkpoint fast, with a label. Runs as the postgres user, so files keep its owner.
 */
export async function baseBackup(options: {
  cluster: Cluster
  outDir: string
  label?: string
}): Promise<BaseBackupInfo> {
  const { cluster, outDir } = options
  const started = Date.now()
  if (existsSync(outDir) && readdirSync(outDir).length > 0)
    throw new UserError(
      `base backup directory ${outDir} is not empty — choose a new directory`,
      'backup_exists'
    )
  mkdirForPostgres(outDir)
  const label = options.label ?? `backout ${formatBackupId(new Date())}`
  // The cluster's URL (its user and password, the password through the environment, never argv).
  const conn = pgCommandConnection(cluster.url())
  const res = await runCommand(
    asPostgresUser([
      path.join(cluster.binDir, 'pg_basebackup'),
      '-d',
      conn.url,
      '-w',
      '-D',
      outDir,
      '-Fp',
      '-X',
      'stream',
      '-c',
      'fast',
      '-l',
      label
    ]),
    { env: conn.env }
  )
  if (res.code !== 0) {
    rmSync(outDir, { recursive: true, force: true })
    const hint = /Permission denied/.test(res.stderr)
      ? ` — the postgres user must be able to reach ${path.dirname(outDir)} (chmod o+x on every parent)`
      : ''
    throw new OperationError(
      `pg_basebackup into ${outDir} failed: ${res.stderr.trim().split('\n').slice(-3).join(' ')}${hint}`,
      'backup_failed'
    )
  }
  return {
    ...readBaseBackupLabel(outDir),
    endTime: new Date().toISOString(),
    durationMs: Date.now() - started
  }
}

/** Checks a base backup's files against its backup_manifest (pg_verifybackup). Returns the problems. */
export async function verifyBaseBackup(dir: string, binDir?: string): Promise<string[]> {
  const bin = requireBinDir(binDir)
  if (!existsSync(path.join(dir, 'backup_manifest'))) return [`${dir}: no backup_manifest to verify against`]
  const res = await runCommand([path.join(bin, 'pg_verifybackup'), '-q', dir])
  return res.code === 0 ? [] : (res.stderr || res.stdout).trim().split('\n').filter(Boolean)
}

/**
 * Single-quotes a path for the shell commands PostgreSQL runs (archive_command, restore_command). The path must be
 * absolute and free of quotes, backslashes, % (PostgreSQL's placeholder) and control characters — refused, not
 * escaped, so the command can be read and trusted.
 */
export function shellQuotePath(p: string): string {
  if (!path.isAbsolute(p)) throw new UserError(`WAL archive path ${p} must be absolute`, 'bad_config')
  if (/['"\\%`$\u0000-\u001f\u007f]/.test(p))
    throw new UserError(
      `WAL archive path ${JSON.stringify(p)} contains a quote, backslash, %, $, backtick or control character — use a plain path`,
      'bad_config'
    )
  return `'${p}'`
}

/** A postgresql.conf string literal. */
export function confString(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`
}

/**
 * archive_command: copy the segment into archiveDir under a temporary name, fsync, then rename (the archive never
 * holds a partial segment); an already archived identical segment counts as success, a different one as failure.
 */
export function archiveCommandFor(archiveDir: string): string {
  const dir = shellQuotePath(archiveDir)
  const d = (name: string): string => `${dir}/${name}`
  return `test ! -f ${d('%f')} && cp %p ${d('.%f.tmp')} && sync ${d('.%f.tmp')} && mv ${d('.%f.tmp')} ${d('%f')} || cmp -s %p ${d('%f')}`
}

export function restoreCommandFor(archiveDir: string): string {
  return `cp ${shellQuotePath(archiveDir)}/%f %p`
}

/**
 * postgresql.conf settings for WAL archiving into archiveDir (archive_mode needs a restart). archive_timeout
 * bounds how old the newest archived WAL can be, i.e. the data-loss window of a point-in-time recovery.
 */
export function walArchiveSettings(
  archiveDir: string,
  options: { archiveTimeoutSeconds?: number } = {}
): Record<string, string> {
  return {
    wal_level: 'replica',
    archive_mode: 'on',
    archive_command: confString(archiveCommandFor(archiveDir)),
    archive_timeout: String(options.archiveTimeoutSeconds ?? 60)
  }
}

/** Creates the WAL archive directory, owned by the postgres user. */
export function prepareWalArchive(archiveDir: string): void {
  shellQuotePath(archiveDir)
  mkdirForPostgres(archiveDir)
}

/**
 * Whether the archived WAL runs unbroken from fromSegment along a timeline's history and reaches toTime (see
 * postgres/timelines.ts). `timeline`: the timeline whose history recovery follows (default the newest archived).
 */
export async function checkWalContinuity(
  archiveDir: string,
  fromSegment: string,
  toTime?: Date | string,
  binDir?: string,
  options: { timeline?: number } = {}
): Promise<WalContinuity> {
  return walContinuity(archiveDir, fromSegment, toTime, requireBinDir(binDir), options)
}

export interface WalWindow extends WalContinuity {
  /** The earliest time a recovery from this base backup can stop at (the backup's end), ISO-8601. */
  earliest: string
  /** The latest time it can stop at (the newest commit in the unbroken WAL), ISO-8601. */
  latest?: string
}

/** The recoverable window of a base backup with the archive: from the backup's end to the newest archived commit. */
export async function walWindow(
  archiveDir: string,
  base: BaseBackupInfo | string,
  binDir?: string,
  options: { timeline?: number } = {}
): Promise<WalWindow> {
  const info = typeof base === 'string' ? readBaseBackupLabel(base) : base
  // The backup history file PostgreSQL archives at the end of a backup records its STOP TIME.
  const startFile = info.startSegment
  let earliest = info.endTime ?? info.startTime
  if (existsSync(archiveDir)) {
    for (const n of readdirSync(archiveDir).filter(n => n.startsWith(startFile) && n.endsWith('.backup'))) {
      const text = readFileSync(path.join(archiveDir, n), 'utf8')
      const stop = /^STOP TIME: (.*)$/m.exec(text)?.[1]
      if (text.includes(`START WAL LOCATION: ${info.startLsn} `) && stop) earliest = pgTime(stop)
    }
  }
  const c = await checkWalContinuity(archiveDir, info.startSegment, undefined, binDir, options)
  return { ...c, earliest, latest: c.latestCommit }
}

/**
 * Makes a running cluster's newest commits recoverable from the archive: writes a commit (so a recovery target
 * up to now has a commit after it to stop at), switches WAL and waits until that segment is archived.
 */
export async function flushWalToArchive(cluster: Cluster, timeoutMs = 30_000): Promise<string> {
  return withClient(cluster.url(), async c => {
    await c.query('SELECT txid_current()')
    const sw = await c.query<{ seg: string }>('SELECT pg_walfile_name(pg_switch_wal()) AS seg')
    const seg = sw.rows[0]?.seg ?? ''
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const st = await c.query<{ last: string | null; failed: string | null }>(
        'SELECT last_archived_wal AS last, last_failed_wal AS failed FROM pg_stat_archiver'
      )
      const last = st.rows[0]?.last
      if (last && last.slice(8) >= seg.slice(8)) return seg
      if (Date.now() > deadline)
        throw new OperationError(
          `WAL segment ${seg} was not archived within ${timeoutMs / 1000}s (last archived ${last ?? 'none'}, last failed ${st.rows[0]?.failed ?? 'none'}) — check archive_command`,
          'wal_archive_stalled'
        )
      await new Promise(r => setTimeout(r, 100))
    }
  })
}

// ---------------------------------------------------------------------------------------------------------------
// Physical restore with point-in-time recovery

export interface PhysicalRestoreOptions {
  cluster: Cluster
  /** The server log pg_ctl writes to: read to confirm how recovery ended. */
  logFile: string
  /** A plain-format base backup directory, or a .tar.zst of one. */
  backupDir: string
  /**
   * backupDir is a scratch copy (an extracted, verified base backup — never the backup itself) that the restore
   * may consume: it is renamed into the staging place instead of copied, and is gone afterwards. Across
   * filesystems it is copied as usual (and left in place). Default false: backupDir is only read.
   */
  consumeBackupDir?: boolean
  walArchiveDir?: string
  /** Recover to this time (needs walArchiveDir); without it, to the end of the base backup (recovery_target=immediate). */
  targetTime?: Date | string
  /** Check continuity and reach of the archived WAL before stopping anything (default true). */
  verifyWal?: boolean
  /** Keep the current postgresql.conf, pg_hba.conf, pg_ident.conf and postgresql.auto.conf (default true). */
  keepConfig?: boolean
  /** How long recovery may take, default 10 minutes. */
  timeoutMs?: number
  now?: () => Date
  logger?: Logger
}

export interface PhysicalRestoreResult {
  dataDir: string
  /** The data directory as it was before the restore, kept under this name. */
  previousDataDir?: string
  targetTime?: string
  /** From the server log: "recovery stopping before commit of transaction N, time T". */
  stoppedBefore?: { xid: number; time: string }
  /** pg_last_xact_replay_timestamp(): the last transaction replayed, ISO-8601. */
  lastReplayed?: string
  durationMs: number
}

function stamp(now: Date): string {
  return formatBackupId(now)
}

/**
 * Undoes a restore that was interrupted anywhere in its data-directory swap (a kill before any rename, during the
 * replay, before the verdict): the original directory comes back, an unverified one is kept aside as
 * *.backout-failed-*, and the cluster is started again when it ran before. Works when no directory is left at
 * dataDir. Idempotent; false when there was nothing to undo.
 */
export async function recoverInterruptedRestore(
  cluster: Cluster,
  now = new Date(),
  logger?: Logger,
  logFile?: string
): Promise<boolean> {
  const j = readSwapJournal(cluster.dataDir)
  if (!j) {
    // Killed before the journal was in place: nothing was renamed; only a staged copy may be left.
    for (const f of [swapJournalFile(cluster.dataDir), `${swapJournalFile(cluster.dataDir)}.tmp`])
      rmSync(f, { force: true })
    rmSync(`${cluster.dataDir}.backout-restoring`, { recursive: true, force: true })
    return false
  }
  // A restored server may still run (it outlives the process that started it): stop it before moving its files.
  if (existsSync(cluster.dataDir)) await stopCluster(cluster, 'immediate')
  undoSwap(j, now, logger)
  if (
    j.wasRunning &&
    logFile &&
    existsSync(path.join(cluster.dataDir, 'PG_VERSION')) &&
    !clusterPid(cluster.dataDir)
  )
    await startCluster(cluster, logFile)
  return true
}

/** Refuses (nothing touched) when database.url's credentials do not connect: the readiness checks would fail. */
async function checkCanConnect(cluster: Cluster): Promise<void> {
  try {
    await withClient(cluster.url(), c => c.query('SELECT 1'))
  } catch (e) {
    throw new UserError(
      `cannot connect to ${redact(cluster.url())} (${e instanceof Error ? e.message : String(e)}) — check the user and ` +
        'password in database.url; nothing was changed',
      'db_unreachable'
    )
  }
}

function readFrom(file: string, offset: number): string {
  if (!existsSync(file)) return ''
  const fd = openSync(file, 'r')
  try {
    const size = fstatSync(fd).size
    if (size <= offset) return ''
    const buf = Buffer.alloc(size - offset)
    readSync(fd, buf, 0, buf.length, offset)
    return buf.toString('utf8')
  } finally {
    closeSync(fd)
  }
}

function alive(pid: number | undefined): boolean {
  if (!pid) return false
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

async function du(dir: string): Promise<number> {
  const res = await runChecked(['du', '-sb', dir])
  return Number(res.stdout.split('\t')[0])
}

function sameFilesystem(a: string, b: string): boolean {
  try {
    return statSync(a).dev === statSync(b).dev
  } catch {
    return false
  }
}

/** Renames a directory; false (nothing moved) when from and to are on different filesystems. */
function renameDir(from: string, to: string): boolean {
  try {
    swapRename(from, to)
    return true
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EXDEV') return false
    throw e
  }
}

/**
 * Restores a base backup over the cluster and replays archived WAL up to targetTime. Before stopping anything it
 * checks the backup, the free disk and (verifyWal) that the archive reaches the target: any failure is a
 * UserError with nothing touched. The backup is copied into a staging directory while the cluster still runs
 * (or, with consumeBackupDir, a scratch copy of it is renamed there);
 * then the cluster stops, the old data directory is renamed aside (kept, never deleted), the staged one renamed
 * in, and PostgreSQL replays WAL and promotes. Success requires the server log to show recovery stopping before a
 * commit after the target and the server out of recovery; otherwise the restore is undone (old directory back,
 * started again) and an OperationError says why — it never reports a recovery it cannot prove.
 */
export async function physicalRestore(options: PhysicalRestoreOptions): Promise<PhysicalRestoreResult> {
  const started = Date.now()
  const { cluster, logFile, backupDir, walArchiveDir } = options
  const log = options.logger
  const now = options.now ?? (() => new Date())
  const { dataDir } = cluster
  await recoverInterruptedRestore(cluster, now(), log, logFile)

  // --- preflight: nothing is touched until all of this passes
  if (!existsSync(backupDir))
    throw new UserError(`base backup ${backupDir} does not exist — pick another backup`, 'backup_missing')
  const archived = statSync(backupDir).isFile()
  if (archived && !backupDir.endsWith('.tar.zst'))
    throw new UserError(
      `base backup ${backupDir} is neither a directory nor a .tar.zst archive`,
      'backup_corrupt'
    )
  let target: Date | undefined
  if (options.targetTime !== undefined) {
    target = new Date(options.targetTime)
    if (Number.isNaN(target.getTime()))
      throw new UserError(`recovery target time "${String(options.targetTime)}" is not a date`, 'bad_target')
    if (!walArchiveDir)
      throw new UserError(
        'a recovery target time needs the WAL archive (wal archive dir) — without it only the backup point is reachable',
        'wal_missing'
      )
    if (target > now())
      throw new UserError(`recovery target ${target.toISOString()} is in the future`, 'bad_target')
  }
  const restoreCommand = walArchiveDir ? restoreCommandFor(walArchiveDir) : undefined
  let info: BaseBackupInfo | undefined
  if (!archived) {
    info = readBaseBackupLabel(backupDir)
    const problems = await verifyBaseBackup(backupDir, cluster.binDir)
    if (problems.length && existsSync(path.join(backupDir, 'backup_manifest')))
      throw new UserError(
        `base backup ${backupDir} fails pg_verifybackup:\n  ${problems.slice(0, 5).join('\n  ')}`,
        'backup_corrupt'
      )
    // A scratch copy on the data directory's filesystem is renamed, not copied: it needs no more room.
    const moved = options.consumeBackupDir === true && sameFilesystem(backupDir, path.dirname(dataDir))
    const need = moved ? 0 : await du(backupDir)
    const { freeBytes } = await freeSpace(path.dirname(dataDir))
    if (need * 1.1 > freeBytes)
      throw new UserError(
        `restoring ${backupDir} needs ${formatBytes(need)} next to ${dataDir}, only ${formatBytes(freeBytes)} free — ` +
          'prune old backups or *.replaced-* data directories',
        'disk_full'
      )
  }
  const running = alive(clusterPid(dataDir))
  if (running) await checkCanConnect(cluster)
  // Recovery follows the replaced cluster's own history: not the newest timeline in the archive, which may be
  // an abandoned (undone) attempt's.
  const timeline = await dataDirTimeline(dataDir, cluster.binDir)
  if (target && walArchiveDir) {
    const check = async (): Promise<WalContinuity | undefined> => {
      if (running) {
        try {
          await flushWalToArchive(cluster)
        } catch (e) {
          log?.warn(
            `could not flush the current WAL to the archive: ${e instanceof Error ? e.message : String(e)}`
          )
        }
      }
      if (!info || options.verifyWal === false) return undefined
      return checkWalContinuity(walArchiveDir, info.startSegment, target, cluster.binDir, { timeline })
    }
    // (After an interrupted run, recoverInterruptedRestore above started the original again when it ran: its
    // newest WAL is flushed here like on a first run, rather than the archive judged while everything is down.)
    const c = await check()
    if (c && info) {
      const w = await walWindow(walArchiveDir, info, cluster.binDir, { timeline })
      if (target < new Date(w.earliest))
        throw new UserError(
          `recovery target ${target.toISOString()} is before the base backup finished (${w.earliest}) — use an older base backup`,
          'bad_target'
        )
      if (!c.continuous || !c.reachesTarget)
        throw new UserError(
          `point-in-time recovery to ${target.toISOString()} is not possible: ${c.problems.join('; ')}`,
          c.abandoned ? 'bad_target' : 'wal_gap'
        )
    }
  }

  // --- stage the restored directory while the cluster still runs
  const staging = `${dataDir}.backout-restoring`
  rmSync(staging, { recursive: true, force: true })
  if (archived) {
    mkdirForPostgres(staging)
    await untarZstd(backupDir, staging)
  } else if (options.consumeBackupDir && renameDir(backupDir, staging)) {
    // The scratch copy itself becomes the staging directory: owned by PostgreSQL's user, no group/other access.
    chownForPostgres(staging)
    if ((statSync(staging).mode & 0o027) !== 0) chmodSync(staging, 0o700)
  } else {
    mkdirForPostgres(staging)
    await runChecked(['cp', '-a', `${backupDir}/.`, `${staging}/`])
  }
  if (!info) info = readBaseBackupLabel(staging)
  for (const f of ['postmaster.pid', 'postmaster.opts', 'standby.signal', 'recovery.signal'])
    rmSync(path.join(staging, f), { force: true })
  if (options.keepConfig !== false && existsSync(dataDir))
    for (const f of ['postgresql.conf', 'pg_hba.conf', 'pg_ident.conf', 'postgresql.auto.conf'])
      if (existsSync(path.join(dataDir, f)))
        await runChecked(['cp', '-a', path.join(dataDir, f), path.join(staging, f)])
  const auto = path.join(staging, 'postgresql.auto.conf')
  const settings: Record<string, string> = target
    ? {
        restore_command: confString(restoreCommand ?? ''),
        recovery_target_time: confString(target.toISOString().replace('T', ' ').replace('Z', '+00')),
        recovery_target_inclusive: 'on',
        recovery_target_timeline: confString(timeline ? String(timeline) : 'latest'),
        recovery_target_action: confString('promote')
      }
    : {
        // Archive recovery needs a restore_command; without an archive the WAL in the backup is all there is.
        restore_command: confString(restoreCommand ?? 'false'),
        recovery_target: confString('immediate'),
        recovery_target_action: confString('promote')
      }
  writeRecoverySettings(auto, info.label || info.startTime, settings)
  chownForPostgres(auto)
  writeFileSync(path.join(staging, 'recovery.signal'), '')
  chownForPostgres(path.join(staging, 'recovery.signal'))

  // --- swap: stop, rename the old directory aside (kept), rename the staged one in — journaled (restore-swap.ts)
  await stopCluster(cluster)
  const aside = unusedPath(`${dataDir}.replaced-${stamp(now())}`)
  const hadOld = existsSync(dataDir)
  const journal = { dataDir, aside, staging, hadOld, wasRunning: running }
  swapIn(journal)
  log?.info(
    `data directory swapped: previous one kept at ${aside}; replaying WAL${target ? ` to ${target.toISOString()}` : ''}`
  )

  const offset = existsSync(logFile) ? statSync(logFile).size : 0
  const undo = async (why: string): Promise<never> => {
    const logText = readFrom(logFile, offset)
    await stopCluster(cluster, 'immediate').catch(() => undefined)
    const failed = undoSwap(journal, now(), log) ?? `${dataDir}.backout-failed-?`
    let restarted = ''
    if (hadOld && running) {
      try {
        await startCluster(cluster, logFile)
        restarted = ' and started again'
      } catch (e) {
        restarted = `, but it did not start: ${e instanceof Error ? e.message : String(e)}`
      }
    }
    const excerpt = logText
      .split('\n')
      .filter(l => /FATAL|PANIC|ERROR|recovery|redo|consistent/i.test(l) && !/cp: cannot stat/.test(l))
      .slice(-8)
      .join('\n    ')
    throw new OperationError(
      `point-in-time recovery FAILED${target ? ` to reach ${target.toISOString()}` : ''}: ${why}. ` +
        `Nothing was kept from the attempt: the previous data directory is back at ${dataDir}${restarted}; ` +
        `the failed attempt is kept at ${failed}.\n  server log:\n    ${excerpt}`,
      'recovery_target_not_reached'
    )
  }

  try {
    await startCluster(cluster, logFile)
    crashPoint('recovery-started')
  } catch (e) {
    const text = readFrom(logFile, offset)
    if (
      !/recovery ended before configured recovery target was reached/.test(text) &&
      alive(clusterPid(dataDir))
    ) {
      // pg_ctl gave up waiting while recovery still runs: keep waiting below.
    } else
      return undo(
        /recovery ended before configured recovery target was reached/.test(text)
          ? 'PostgreSQL says "recovery ended before configured recovery target was reached" (the archived WAL does not cover the target)'
          : `the server did not start: ${(e instanceof Error ? e.message : String(e)).replace(/\.*\s*$/, '')}`
      )
  }

  const deadline = Date.now() + (options.timeoutMs ?? 600_000)
  let lastReplayed: string | undefined
  for (;;) {
    const text = readFrom(logFile, offset)
    if (/recovery ended before configured recovery target was reached/.test(text))
      return undo('PostgreSQL says "recovery ended before configured recovery target was reached"')
    if (!alive(clusterPid(dataDir))) return undo('the server stopped during recovery')
    let inRecovery: boolean | undefined
    try {
      const r = await withClient(cluster.url(), c =>
        c.query<{ rec: boolean; replay: Date | null }>(
          'SELECT pg_is_in_recovery() AS rec, pg_last_xact_replay_timestamp() AS replay'
        )
      )
      inRecovery = r.rows[0]?.rec
      lastReplayed = r.rows[0]?.replay?.toISOString()
    } catch (e) {
      // Wrong credentials never start working: say so instead of polling until the deadline.
      const code = (e as { code?: string }).code
      if (code === '28P01' || code === '28000')
        return undo(
          `cannot connect to check the recovery (${e instanceof Error ? e.message : String(e)}) — the restored ` +
            "cluster's roles and passwords are the backup's: was database.url's password changed since?"
        )
      inRecovery = undefined
    }
    if (inRecovery === false) break
    if (Date.now() > deadline)
      return undo(`recovery did not finish within ${(options.timeoutMs ?? 600_000) / 1000}s`)
    await new Promise(r => setTimeout(r, 200))
  }

  // --- prove the target was reached
  const text = readFrom(logFile, offset)
  let stoppedBefore: PhysicalRestoreResult['stoppedBefore']
  if (target) {
    const m = /recovery stopping before (?:commit|abort) of transaction (\d+), time (.+)$/m.exec(text)
    if (!m?.[1] || !m[2])
      return undo(
        'the server log does not show recovery stopping at the target (no "recovery stopping before …")'
      )
    stoppedBefore = { xid: Number(m[1]), time: pgTime(m[2]) }
    if (new Date(stoppedBefore.time) <= target)
      return undo(`recovery stopped at ${stoppedBefore.time}, not after the target`)
    if (lastReplayed && new Date(lastReplayed) > target)
      return undo(`the last replayed transaction (${lastReplayed}) is after the target`)
  } else if (!/recovery stopping after reaching consistency/.test(text)) {
    return undo('the server log does not show recovery stopping at the end of the base backup')
  }
  removeRecoverySettings(dataDir)
  finishSwap(dataDir)
  return {
    dataDir,
    previousDataDir: hadOld ? aside : undefined,
    targetTime: target?.toISOString(),
    stoppedBefore,
    lastReplayed,
    durationMs: Date.now() - started
  }
}
