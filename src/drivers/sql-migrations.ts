import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { Client, type ClientBase } from 'pg'
import { UserError, messageOf } from '../core/errors'
import type { Logger } from '../core/logger'
import {
  type DownPlan,
  type MigrationScript,
  parseDownScriptName,
  parseUpScriptName,
  planDown,
  prepareMigrationScript
} from '../core/migration-plan'

/**
 * SQL migrations on PostgreSQL, the SpaceTime runbook's Method 1: `migrations/<version>_<name>.sql` up and
 * `migrations/rollback/<version>_<name>_down.sql` down, each script maintaining its own row in
 * schema_migrations. Down scripts run newest first, one transaction per version; a version counts as rolled
 * back only when its row is gone before the COMMIT.
 */

/** The part of a pg client this driver uses. */
export type SqlClient = Pick<ClientBase, 'query'>

/** Where to run: an open client (for example the one holding the advisory lock) or a connection string. */
export type Connection = { client: SqlClient } | { url: string }

export const DEFAULT_MIGRATIONS_TABLE = 'schema_migrations'

function listScripts(
  dir: string,
  parse: (f: string) => { version: number; name: string } | undefined
): MigrationScript[] {
  if (!existsSync(dir)) throw new UserError(`migrations directory ${dir} does not exist — check the path`)
  return readdirSync(dir)
    .map(f => ({ f, parsed: parse(f) }))
    .filter(
      (x): x is { f: string; parsed: { version: number; name: string } } =>
        x.parsed !== undefined && !x.f.startsWith('.')
    )
    .map(({ f, parsed }) => ({ ...parsed, file: path.join(dir, f) }))
    .sort((a, b) => b.version - a.version)
}

/** The down scripts in a rollback directory (`<version>_<name>_down.sql`), newest first. */
export function listDownScripts(dir: string): MigrationScript[] {
  return listScripts(dir, parseDownScriptName)
}

/** The up scripts in a migrations directory (`<version>_<name>.sql`), oldest first. */
export function listUpScripts(dir: string): MigrationScript[] {
  return listScripts(dir, parseUpScriptName).reverse()
}

/** Quotes a table name, optionally schema-qualified; anything else is refused. */
export function quoteTableName(name: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$/.test(name))
    throw new UserError(`migrations table "${name}" is not a plain [schema.]table name — fix the setting`)
  return name
    .split('.')
    .map(p => `"${p}"`)
    .join('.')
}

async function withConnection<T>(conn: Connection, fn: (client: SqlClient) => Promise<T>): Promise<T> {
  if ('client' in conn) return fn(conn.client)
  const client = new Client({ connectionString: conn.url })
  await client.connect()
  try {
    return await fn(client)
  } finally {
    await client.end().catch(() => undefined)
  }
}

/** The versions recorded in schema_migrations, newest first (empty when the table does not exist). */
export async function readAppliedVersions(
  conn: Connection,
  table = DEFAULT_MIGRATIONS_TABLE
): Promise<number[]> {
  const quoted = quoteTableName(table)
  return withConnection(conn, async client => {
    const exists = await client.query<{ t: string | null }>('SELECT to_regclass($1)::text AS t', [quoted])
    if (!exists.rows[0]?.t) return []
    const res = await client.query<{ v: string }>(`SELECT version::text AS v FROM ${quoted}`)
    return res.rows.map(r => Number(r.v)).sort((a, b) => b - a)
  })
}

/** Reads schema_migrations and the rollback directory and plans the way down to `target`. */
export async function loadDownPlan(options: {
  connection: Connection
  rollbackDir: string
  target: number
  table?: string
}): Promise<DownPlan> {
  const applied = await readAppliedVersions(options.connection, options.table)
  const current = applied[0] ?? 0
  return planDown(current, options.target, listDownScripts(options.rollbackDir), applied)
}

/** The SQL backout runs for one version: the down script with its own BEGIN;/COMMIT; taken off. */
export function downScriptBody(step: MigrationScript): string {
  return prepareMigrationScript(readFileSync(step.file, 'utf8'), step.file).body
}

/**
 * The exact SQL a rollback runs, for --dry-run: for each version, newest first, BEGIN, the script's body and
 * COMMIT. Refuses (UserError) when a version has no down script or a script controls its own transaction.
 */
export function downSql(plan: DownPlan, table = DEFAULT_MIGRATIONS_TABLE): string {
  refuseMissing(plan)
  const parts = [`-- backout: ${plan.current} → ${plan.target}, one transaction per version`]
  for (const step of plan.steps) {
    parts.push(
      `-- version ${step.version}: ${path.basename(step.file)}`,
      'BEGIN;',
      downScriptBody(step),
      `-- backout checks: no row with version ${step.version} is left in ${table}`,
      'COMMIT;'
    )
  }
  return parts.join('\n') + '\n'
}

function refuseMissing(plan: DownPlan): void {
  if (plan.missing.length > 0)
    throw new UserError(
      `no down script for version ${plan.missing.join(', ')} — restore the database from the target backup instead (the runbook's Method 2)`,
      'down_script_missing'
    )
}

export interface DownFailure {
  version: number
  file: string
  message: string
}

export interface DownResult {
  ok: boolean
  /** Versions rolled back and committed, newest first. */
  completed: number[]
  /** The version that failed; its transaction was rolled back, so it is still applied. */
  failed?: DownFailure
  /** Versions not attempted after a failure or an abort. */
  remaining: number[]
  aborted: boolean
}

export interface RunDownOptions {
  connection: Connection
  plan: DownPlan
  table?: string
  signal?: AbortSignal
  logger?: Logger
}

/**
 * Runs the plan's down scripts, newest first, each in one transaction: BEGIN, the script, a check that its
 * schema_migrations row is gone, COMMIT. Stops at the first failure (that version's transaction is rolled
 * back) and returns it — the caller then restores from the backup (Method 2). An abort stops between
 * versions. Every script is read and checked before the first one runs.
 */
export async function runDown(options: RunDownOptions): Promise<DownResult> {
  const { plan, logger } = options
  const table = options.table ?? DEFAULT_MIGRATIONS_TABLE
  const quoted = quoteTableName(table)
  refuseMissing(plan)
  const bodies = plan.steps.map(step => ({ step, body: downScriptBody(step) }))
  const completed: number[] = []
  return withConnection(options.connection, async client => {
    for (const [i, { step, body }] of bodies.entries()) {
      const rest = plan.steps.slice(i).map(s => s.version)
      if (options.signal?.aborted) {
        logger?.warn(`aborted before version ${step.version}; ${rest.join(', ')} not rolled back`)
        return { ok: false, completed, remaining: rest, aborted: true }
      }
      logger?.info(`rolling back version ${step.version} (${path.basename(step.file)})`)
      try {
        await client.query('BEGIN')
        await client.query(body)
        const left = await client.query(`SELECT 1 FROM ${quoted} WHERE version::text = $1`, [
          String(step.version)
        ])
        if (left.rows.length > 0)
          throw new Error(
            `the script ran but version ${step.version} is still in ${table} — the down script must DELETE its own row`
          )
        await client.query('COMMIT')
        completed.push(step.version)
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined)
        const message = describePgError(error)
        logger?.error(`[DB-ROLLBACK] rollback script for version ${step.version} failed: ${message}`)
        return {
          ok: false,
          completed,
          failed: { version: step.version, file: step.file, message },
          remaining: rest.slice(1),
          aborted: false
        }
      }
    }
    return { ok: true, completed, remaining: [], aborted: false }
  })
}

export interface RunUpOptions {
  connection: Connection
  scripts: readonly MigrationScript[]
  table?: string
}

/**
 * Applies up scripts in order, each in one transaction, checking that each recorded its version. Used by the
 * migration check and by tests; a deployment's own tool applies migrations in production.
 */
export async function runUp(options: RunUpOptions): Promise<void> {
  const table = options.table ?? DEFAULT_MIGRATIONS_TABLE
  const quoted = quoteTableName(table)
  await withConnection(options.connection, async client => {
    for (const script of options.scripts) {
      const body = prepareMigrationScript(readFileSync(script.file, 'utf8'), script.file).body
      try {
        await client.query('BEGIN')
        await client.query(body)
        const row = await client.query(`SELECT 1 FROM ${quoted} WHERE version::text = $1`, [
          String(script.version)
        ])
        if (row.rows.length === 0)
          throw new Error(
            `the script ran but did not record version ${script.version} in ${table} — INSERT its row`
          )
        await client.query('COMMIT')
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined)
        throw new Error(`${path.basename(script.file)}: ${describePgError(error)}`)
      }
    }
  })
}

function describePgError(error: unknown): string {
  const e = error as { code?: unknown; detail?: unknown; position?: unknown }
  const parts = [messageOf(error)]
  if (typeof e.code === 'string') parts.push(`(SQLSTATE ${e.code})`)
  if (typeof e.detail === 'string') parts.push(`— ${e.detail}`)
  return parts.join(' ')
}

// ---------------------------------------------------------------------------------------------------------
// Advisory lock

/** The default lock name: every backout rollback of a database takes this one. */
export const MIGRATION_LOCK_NAME = 'backout:migrations'

/** A stable signed 64-bit advisory lock key for a name (the first 8 bytes of its SHA-256). */
export function advisoryLockKey(name: string): bigint {
  return createHash('sha256').update(name).digest().readBigInt64BE(0)
}

/**
 * Holds a session-level PostgreSQL advisory lock on its own connection while `fn` runs, so no other backout
 * rollback or lock-aware migration runs beside it; `fn` gets that connection. When another session holds the
 * lock, refuses before anything changes. The lock is released when `fn` ends, and by the server if the
 * connection dies.
 */
export async function withAdvisoryLock<T>(
  url: string,
  key: string | bigint,
  fn: (client: SqlClient) => Promise<T>
): Promise<T> {
  const k = typeof key === 'bigint' ? key : advisoryLockKey(key)
  const client = new Client({ connectionString: url })
  await client.connect()
  try {
    const got = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1::bigint) AS ok', [
      k.toString()
    ])
    if (!got.rows[0]?.ok) {
      const holder = await lockHolder(client, k)
      throw new UserError(
        `a migration is running on database ${client.database ?? '?'}: advisory lock ${String(key)} is held${holder} — wait for it to finish, then run the rollback again`,
        'migration_running'
      )
    }
    try {
      return await fn(client)
    } finally {
      await client.query('SELECT pg_advisory_unlock($1::bigint)', [k.toString()]).catch(() => undefined)
    }
  } finally {
    await client.end().catch(() => undefined)
  }
}

async function lockHolder(client: SqlClient, key: bigint): Promise<string> {
  const unsigned = BigInt.asUintN(64, key)
  const classid = (unsigned >> 32n).toString()
  const objid = (unsigned & 0xffffffffn).toString()
  try {
    const res = await client.query<{ pid: number; app: string | null; since: string | null }>(
      `SELECT l.pid, a.application_name AS app, a.xact_start::text AS since
         FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE l.locktype = 'advisory' AND l.granted AND l.classid::text = $1 AND l.objid::text = $2 AND l.objsubid = 1
        LIMIT 1`,
      [classid, objid]
    )
    const row = res.rows[0]
    return row ? ` by backend pid ${row.pid}${row.app ? ` (${row.app})` : ''}` : ''
  } catch {
    return ''
  }
}
