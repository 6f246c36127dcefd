import { existsSync } from 'node:fs'
import { Client } from 'pg'
import type { Config } from '../core/config'
import { runCommand } from './exec'

type Database = NonNullable<Config['database']>

/** Runs one query with a deadline on the service's PostgreSQL and returns its rows. */
export async function pgQuery<T = Record<string, unknown>>(
  url: string,
  sql: string,
  timeoutMs = 5000
): Promise<T[]> {
  const client = new Client({
    connectionString: url,
    connectionTimeoutMillis: timeoutMs,
    statement_timeout: timeoutMs
  })
  client.on('error', () => undefined) // a server going away fails the query, never crashes the process
  await client.connect()
  try {
    return (await client.query(sql)).rows as T[]
  } finally {
    await client.end()
  }
}

async function sqlite(path: string, sql: string): Promise<{ ok: boolean; out: string }> {
  if (!existsSync(path)) return { ok: false, out: `${path} does not exist` }
  const res = await runCommand(['sqlite3', '-batch', '-readonly', path, sql], { timeoutMs: 10_000 })
  return { ok: res.code === 0, out: (res.code === 0 ? res.stdout : res.stderr).trim() }
}

/** SELECT 1: whether the database answers. */
export async function databasePing(db: Database): Promise<{ ok: boolean; detail: string }> {
  const started = performance.now()
  try {
    if (db.kind === 'postgres') await pgQuery(db.url, 'SELECT 1')
    else {
      const r = await sqlite(db.path, 'SELECT 1;')
      if (!r.ok) return { ok: false, detail: r.out }
    }
    return { ok: true, detail: `SELECT 1 in ${Math.round(performance.now() - started)} ms` }
  } catch (e) {
    return { ok: false, detail: e instanceof Error ? e.message : String(e) }
  }
}

/** Row counts of the given tables; a table that is missing is reported as such. */
export async function tableCounts(
  db: Database,
  tables: readonly string[]
): Promise<Record<string, number | 'missing'>> {
  const out: Record<string, number | 'missing'> = {}
  for (const table of tables) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(table))
      throw new Error(`criticalTables: "${table}" is not a plain table name`)
    if (db.kind === 'postgres') {
      const [exists] = await pgQuery<{ present: boolean }>(
        db.url,
        `SELECT to_regclass('public.${table}') IS NOT NULL AS present`
      )
      out[table] = exists?.present
        ? Number((await pgQuery<{ n: string }>(db.url, `SELECT count(*) AS n FROM "${table}"`))[0]?.n)
        : 'missing'
    } else {
      const r = await sqlite(db.path, `SELECT count(*) FROM "${table}";`)
      out[table] = r.ok ? Number(r.out) : 'missing'
    }
  }
  return out
}

/** SQLite: PRAGMA integrity_check and foreign_key_check; PostgreSQL: the critical tables are present. */
export async function integrityCheck(db: Database): Promise<{ ok: boolean; detail: string }> {
  if (db.kind === 'sqlite') {
    const integrity = await sqlite(db.path, 'PRAGMA integrity_check;')
    if (!integrity.ok || integrity.out !== 'ok')
      return { ok: false, detail: `integrity_check: ${integrity.out.slice(0, 300)}` }
    const fk = await sqlite(db.path, 'PRAGMA foreign_key_check;')
    if (!fk.ok || fk.out !== '')
      return { ok: false, detail: `foreign_key_check: ${fk.out.split('\n').length} violations` }
    return { ok: true, detail: 'integrity_check ok, no foreign key violations' }
  }
  const counts = await tableCounts(db, db.criticalTables)
  const missing = Object.entries(counts).filter(([, n]) => n === 'missing')
  if (missing.length) return { ok: false, detail: `tables missing: ${missing.map(([t]) => t).join(', ')}` }
  return { ok: true, detail: `${db.criticalTables.length} critical tables present` }
}
