import { createHash, randomInt } from 'node:crypto'
import { copyFile, open, rename, rm } from 'node:fs/promises'
import { existsSync, realpathSync, statSync } from 'node:fs'
import path from 'node:path'
import { OperationError, UserError } from '../core/errors'
import type { Logger } from '../core/logger'
import { formatBackupId } from '../core/run-record'
import { type SqliteIdentity, backoutId } from '../core/sqlite-identity'
import { sha256File } from './archive'
import { runCommand } from './exec'
import { unusedFileName } from './paths'

/**
 * SQLite through the sqlite3 CLI, always with argument arrays: the online backup API (.backup) for backups,
 * never a plain copy of a live file; PRAGMA integrity_check and foreign_key_check; table counts; and the VBRPG
 * runbook's restore (section 3): the bad file moved aside with a timestamp, the backup copied in, checked.
 */

const BUSY_TIMEOUT = '.timeout 10000'

/** Runs one statement or dot-command on dbPath with JSON output; rejects with sqlite3's own message. */
async function sqliteJson<T>(dbPath: string, sql: string): Promise<T[]> {
  const res = await runCommand(['sqlite3', '-batch', '-bail', '-cmd', BUSY_TIMEOUT, '-json', dbPath, sql])
  if (res.code !== 0) throw new Error(`sqlite3 ${dbPath}: ${(res.stderr || res.stdout).trim()}`)
  const text = res.stdout.trim()
  return text ? (JSON.parse(text) as T[]) : []
}

/** A path sqlite3's dot-command parser takes literally inside double quotes. */
function dotArg(p: string): string {
  if (/["\\\u0000-\u001f]/.test(p))
    throw new UserError(
      `SQLite path ${JSON.stringify(p)} contains a quote, backslash or control character`,
      'bad_config'
    )
  return `"${p}"`
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`
}

export interface IntegrityResult {
  ok: boolean
  /** 'ok', or each problem PRAGMA integrity_check reported (or why the file could not be opened). */
  problems: string[]
}

/** PRAGMA integrity_check. A file sqlite3 cannot even open counts as a failed check, not a thrown error. */
export async function integrityCheck(dbPath: string): Promise<IntegrityResult> {
  if (!existsSync(dbPath)) return { ok: false, problems: [`${dbPath} does not exist`] }
  try {
    const rows = await sqliteJson<{ integrity_check: string }>(dbPath, 'PRAGMA integrity_check')
    const problems = rows.map(r => r.integrity_check)
    const ok = problems.length === 1 && problems[0] === 'ok'
    return { ok, problems: ok ? [] : problems }
  } catch (e) {
    return { ok: false, problems: [e instanceof Error ? e.message : String(e)] }
  }
}

export interface ForeignKeyProblem {
  table: string
  rowid: number | null
  parent: string
  fkid: number
}

/** PRAGMA foreign_key_check: the rows whose foreign key points at nothing. */
export async function foreignKeyCheck(dbPath: string): Promise<ForeignKeyProblem[]> {
  return sqliteJson<ForeignKeyProblem>(dbPath, 'PRAGMA foreign_key_check')
}

/** Row counts of every user table (not sqlite_*). */
export async function tableCounts(dbPath: string): Promise<Record<string, number>> {
  const tables = await sqliteJson<{ name: string }>(
    dbPath,
    "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
  )
  if (tables.length === 0) return {}
  const sql = tables
    .map(t => `SELECT ${quoteIdent(t.name)} AS t, count(*) AS n FROM ${quoteIdent(t.name)}`)
    .join(' UNION ALL ')
  const rows = await sqliteJson<{ t: string; n: number }>(dbPath, sql)
  return Object.fromEntries(rows.map(r => [r.t, r.n]))
}

/** The schema version: max(version) of schema_migrations, else alembic_version; undefined when neither exists. */
export async function schemaVersion(dbPath: string): Promise<string | undefined> {
  const has = await sqliteJson<{ name: string }>(
    dbPath,
    "SELECT name FROM sqlite_schema WHERE type = 'table' AND name IN ('schema_migrations', 'alembic_version')"
  )
  const names = new Set(has.map(h => h.name))
  if (names.has('schema_migrations')) {
    const r = await sqliteJson<{ v: string | number | null }>(
      dbPath,
      'SELECT version AS v FROM schema_migrations ORDER BY length(CAST(version AS TEXT)) DESC, CAST(version AS TEXT) DESC LIMIT 1'
    )
    if (r[0]?.v !== undefined && r[0].v !== null) return String(r[0].v)
  }
  if (names.has('alembic_version')) {
    const r = await sqliteJson<{ v: string }>(dbPath, 'SELECT version_num AS v FROM alembic_version')
    if (r.length) return r.map(x => x.v).join(',')
  }
  return undefined
}

function absolutePath(p: string): string {
  try {
    return realpathSync(p)
  } catch {
    return path.resolve(p)
  }
}

/** A database file's identity; `recordAs` is the path to record (the live path when reading a fresh backup). */
export async function readSqliteIdentity(file: string, recordAs = file): Promise<SqliteIdentity> {
  const [app] = await sqliteJson<{ application_id: number }>(file, 'PRAGMA application_id')
  const rows = await sqliteJson<{ type: string; name: string; tbl: string; sql: string | null }>(
    file,
    "SELECT type, name, tbl_name AS tbl, sql FROM sqlite_schema WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY type, name"
  )
  const schema = rows.map(r => [r.type, r.name, r.tbl, r.sql ?? ''].join('\u0000')).join('\u0001')
  return {
    path: absolutePath(recordAs),
    applicationId: (app?.application_id ?? 0) >>> 0,
    tables: rows.filter(r => r.type === 'table').map(r => r.name),
    schemaSha256: createHash('sha256').update(schema).digest('hex')
  }
}

/**
 * Stores a random backout identity in PRAGMA application_id when it is 0 (unused): the first full snapshot of a
 * database does this, once. An application_id already set (backout's, or the application's own) is kept. Returns it.
 */
export async function markSqliteIdentity(dbPath: string): Promise<number> {
  const [app] = await sqliteJson<{ application_id: number }>(dbPath, 'PRAGMA application_id')
  const current = (app?.application_id ?? 0) >>> 0
  if (current !== 0) return current
  const id = backoutId(randomInt(1, 0x1000000))
  // Signed, as SQLite stores it.
  await sqliteJson(dbPath, `PRAGMA application_id = ${id | 0}`)
  const [after] = await sqliteJson<{ application_id: number }>(dbPath, 'PRAGMA application_id')
  return (after?.application_id ?? 0) >>> 0
}

async function fsyncFile(file: string): Promise<void> {
  const fh = await open(file, 'r')
  try {
    await fh.sync()
  } finally {
    await fh.close()
  }
}

export interface SqliteBackupResult {
  /** The identity of the database backed up, read from the copy (see core/sqlite-identity.ts). */
  identity: SqliteIdentity
  file: string
  size: number
  sha256: string
  counts: Record<string, number>
  schemaVersion?: string
}

/**
 * Backs a live database up with SQLite's online backup API (sqlite3 `.backup`): a consistent copy even while the
 * application writes, WAL content included. Written to a temp name, checked with integrity_check, synced, then
 * renamed into place.
 */
export async function onlineBackup(dbPath: string, outFile: string): Promise<SqliteBackupResult> {
  if (!existsSync(dbPath))
    throw new UserError(`SQLite database ${dbPath} does not exist — check database.path`, 'bad_config')
  const tmp = path.join(path.dirname(outFile), `.${path.basename(outFile)}.partial-${process.pid}`)
  await rm(tmp, { force: true })
  try {
    const res = await runCommand([
      'sqlite3',
      '-batch',
      '-bail',
      '-cmd',
      BUSY_TIMEOUT,
      dbPath,
      `.backup ${dotArg(tmp)}`
    ])
    if (res.code !== 0 || !existsSync(tmp))
      throw new OperationError(
        `online backup of ${dbPath} failed: ${(res.stderr || res.stdout).trim()}`,
        'backup_failed'
      )
    // A single self-contained file: no -wal to forget, and the checksum covers everything.
    const mode = await runCommand(['sqlite3', '-batch', '-bail', tmp, 'PRAGMA journal_mode = DELETE'])
    if (mode.code !== 0)
      throw new OperationError(`cannot finalise the backup ${tmp}: ${mode.stderr.trim()}`, 'backup_failed')
    const check = await integrityCheck(tmp)
    if (!check.ok)
      throw new OperationError(
        `the online backup of ${dbPath} fails integrity_check — the live database is probably corrupt: ${check.problems.slice(0, 5).join('; ')}`,
        'backup_failed'
      )
    await fsyncFile(tmp)
    await rename(tmp, outFile)
  } finally {
    await rm(tmp, { force: true })
  }
  return {
    identity: await readSqliteIdentity(outFile, dbPath),
    file: outFile,
    size: statSync(outFile).size,
    sha256: await sha256File(outFile),
    counts: await tableCounts(outFile),
    schemaVersion: await schemaVersion(outFile)
  }
}

async function headerSaysWal(file: string): Promise<boolean> {
  const fh = await open(file, 'r')
  try {
    const buf = Buffer.alloc(20)
    await fh.read(buf, 0, 20, 0)
    return buf.subarray(0, 15).toString('latin1') === 'SQLite format 3' && buf[18] === 2
  } finally {
    await fh.close()
  }
}

export interface SqliteRestoreResult {
  dbPath: string
  restoredFrom: string
  /** Where the replaced files went (<name>_corrupted_<YYYYMMDD_HHMMSS>.db and its -wal/-shm). */
  movedAside: string[]
  /** The rows foreign_key_check reports after the restore (empty when consistent). */
  foreignKeyProblems: ForeignKeyProblem[]
  counts: Record<string, number>
  schemaVersion?: string
}

/** <name>_corrupted_<YYYYMMDD_HHMMSS>.db next to dbPath (UTC), as the VBRPG runbook names it. */
export function corruptedName(dbPath: string, now: Date): string {
  const ext = path.extname(dbPath)
  const base = path.basename(dbPath, ext)
  return path.join(
    path.dirname(dbPath),
    `${base}_corrupted_${formatBackupId(now).replace('-', '_')}${ext || '.db'}`
  )
}

/**
 * The VBRPG runbook's section 3, with the application already stopped: refuses (UserError, nothing touched) unless
 * the backup passes integrity_check; copies the backup next to the database under a temp name; moves the current
 * file and its -wal/-shm aside as <name>_corrupted_<YYYYMMDD_HHMMSS>.db…; renames the copy into place; then runs
 * integrity_check (failure: OperationError) and foreign_key_check, and counts the tables.
 */
export async function restore(
  dbPath: string,
  backupFile: string,
  options: { now?: Date; logger?: Logger } = {}
): Promise<SqliteRestoreResult> {
  const log = options.logger
  if (!existsSync(backupFile))
    throw new UserError(`SQLite backup ${backupFile} does not exist — pick another backup`, 'backup_missing')
  const check = await integrityCheck(backupFile)
  if (!check.ok)
    throw new UserError(
      `SQLite backup ${backupFile} fails integrity_check, refusing to restore it (${dbPath} was not touched): ` +
        `${check.problems.slice(0, 5).join('; ')} — pick another backup`,
      'backup_corrupt'
    )

  const tmp = path.join(path.dirname(dbPath), `.${path.basename(dbPath)}.restoring-${process.pid}`)
  await copyFile(backupFile, tmp)

  // The live file's journal mode (byte 18 of the header is 2 in WAL mode) is kept across the restore.
  const wasWal = existsSync(dbPath) ? await headerSaysWal(dbPath) : false
  if (wasWal) {
    const res = await runCommand(['sqlite3', '-batch', '-bail', tmp, 'PRAGMA journal_mode = WAL'])
    if (res.code !== 0) {
      await rm(tmp, { force: true })
      throw new OperationError(
        `cannot set WAL mode on the restored copy ${tmp}: ${res.stderr.trim()}`,
        'restore_failed'
      )
    }
  }

  await fsyncFile(tmp)

  const movedAside: string[] = []
  // Never over an earlier copy kept in the same second (rename would replace it silently).
  const aside = unusedFileName(corruptedName(dbPath, options.now ?? new Date()))
  try {
    if (existsSync(dbPath)) {
      await rename(dbPath, aside)
      movedAside.push(aside)
    }
    for (const suffix of ['-wal', '-shm', '-journal'])
      if (existsSync(dbPath + suffix)) {
        await rename(dbPath + suffix, aside + suffix)
        movedAside.push(aside + suffix)
      }
    await rename(tmp, dbPath)
  } finally {
    await rm(tmp, { force: true })
  }
  if (movedAside.length) log?.info(`moved the previous database aside: ${movedAside.join(', ')}`)

  const after = await integrityCheck(dbPath)
  if (!after.ok)
    throw new OperationError(
      `${dbPath} fails integrity_check after the restore from ${backupFile}: ${after.problems.slice(0, 5).join('; ')}. ` +
        `The previous file is at ${aside}.`,
      'restore_failed'
    )
  const fk = await foreignKeyCheck(dbPath)
  if (fk.length)
    log?.warn(
      `foreign_key_check reports ${fk.length} row(s) after the restore, e.g. ${JSON.stringify(fk[0])}`
    )
  return {
    dbPath,
    restoredFrom: backupFile,
    movedAside,
    foreignKeyProblems: fk,
    counts: await tableCounts(dbPath),
    schemaVersion: await schemaVersion(dbPath)
  }
}
