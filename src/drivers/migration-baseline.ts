import path from 'node:path'
import { OperationError, UserError } from '../core/errors'
import type { MigrationScript } from '../core/migration-plan'
import { runCommand } from './exec'
import { findPgBinDir } from './postgres-cluster'
import { DEFAULT_MIGRATIONS_TABLE, quoteTableName, readAppliedVersions } from './sql-migrations'

/**
 * Where the SQL migration check starts when the migrations folder is not the whole history (the SpaceTime layout:
 * migrations/ holds the recent versions only, the older ones were applied long ago): a scratch database cannot be
 * built from empty, so the check starts from a copy of the live database's schema and its migrations table — read
 * with pg_dump (a read-only snapshot), never changed. The connection goes to pg_dump and psql in PG* environment
 * variables, so that no password reaches argv.
 */

/** libpq's environment for a postgresql:// URL (password included: environment, never argv). */
function pgEnv(url: string): NodeJS.ProcessEnv {
  const u = new URL(url)
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PGHOST: decodeURIComponent(u.hostname.replace(/^\[|\]$/g, '')) || 'localhost',
    PGPORT: u.port || '5432',
    PGDATABASE: decodeURIComponent(u.pathname.replace(/^\//, '')) || 'postgres',
    PGCONNECT_TIMEOUT: '10'
  }
  if (u.username) env.PGUSER = decodeURIComponent(u.username)
  if (u.password) env.PGPASSWORD = decodeURIComponent(u.password)
  for (const [key, name] of [
    ['sslmode', 'PGSSLMODE'],
    ['host', 'PGHOST'],
    ['user', 'PGUSER']
  ] as const) {
    const v = u.searchParams.get(key)
    if (v) env[name] = v
  }
  return env
}

/**
 * The versions the live database recorded below the oldest up script: what the folder lacks to build the schema
 * from empty. Empty when the folder is the whole history (or the live database records none).
 */
export async function versionsNotInFolder(
  liveUrl: string,
  ups: readonly MigrationScript[],
  table = DEFAULT_MIGRATIONS_TABLE
): Promise<number[]> {
  const oldest = ups[0]?.version ?? Number.POSITIVE_INFINITY
  const applied = await readAppliedVersions({ url: liveUrl }, table)
  return applied.filter(v => v < oldest).sort((a, b) => a - b)
}

/** Copies the live database's schema and its migrations table's rows into the (empty) scratch database. */
export async function copySchema(
  liveUrl: string,
  scratchUrl: string,
  table = DEFAULT_MIGRATIONS_TABLE
): Promise<void> {
  const binDir = findPgBinDir()
  if (!binDir) throw new UserError('PostgreSQL client programs not found (pg_dump, psql) — install them')
  const dump = async (args: string[]): Promise<string> => {
    const res = await runCommand(
      [path.join(binDir, 'pg_dump'), '--no-owner', '--no-privileges', '--no-comments', ...args],
      { env: pgEnv(liveUrl), timeoutMs: 120_000 }
    )
    if (res.code !== 0)
      throw new OperationError(`pg_dump of the live schema failed: ${res.stderr.trim().slice(0, 300)}`)
    return res.stdout
  }
  const schema = await dump(['--schema-only'])
  const rows = await dump(['--data-only', '--inserts', `--table=${quoteTableName(table)}`])
  const load = await runCommand([path.join(binDir, 'psql'), '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', '-'], {
    env: pgEnv(scratchUrl),
    input: `${schema}\n${rows}`,
    timeoutMs: 120_000
  })
  if (load.code !== 0)
    throw new OperationError(
      `loading the live schema into the scratch database failed: ${load.stderr.trim().slice(0, 300)}`
    )
}
