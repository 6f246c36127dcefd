import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Client } from 'pg'
import { OperationError, UserError, messageOf } from '../core/errors'
import type { Logger } from '../core/logger'
import { type SchemaModel, compareSchemas, planDown } from '../core/migration-plan'
import { alembicPython, createAlembic } from './alembic'
import {
  type AlembicDatabase,
  databaseOfUrl,
  describeDatabase,
  forcedIni,
  sameDatabase
} from './alembic-database'
import { copySchema, versionsNotInFolder } from './migration-baseline'
import { dumpPostgresSchema, dumpSqliteSchema } from './schema-dump'
import { listDownScripts, listUpScripts, readAppliedVersions, runDown, runUp } from './sql-migrations'

/**
 * The VBRPG runbook's prevention step as a PR check: on a scratch database, upgrade head → dump the schema →
 * downgrade one → upgrade head → dump again, and fail, naming the migration, when the newest migration does
 * not reverse. Scratch databases are a temp SQLite file or a PostgreSQL database created and dropped here.
 */

export type CheckProject =
  | {
      kind: 'alembic'
      /** The directory holding alembic.ini. */
      projectDir: string
      config?: string
      alembicBin?: string
      /** The environment variable the project's env.py reads the database URL from; default DATABASE_URL. */
      urlEnv?: string
    }
  | {
      kind: 'sql'
      /** Up scripts `<version>_<name>.sql`. */
      migrationsDir: string
      /** Down scripts `<version>_<name>_down.sql`; default <migrationsDir>/rollback. */
      rollbackDir?: string
      table?: string
    }

export type ScratchDatabase =
  | { kind: 'sqlite' }
  /** A server where the check may create and drop a database; adminUrl connects to an existing one. */
  | { kind: 'postgres'; adminUrl: string }

export interface CheckMigrationsOptions {
  project: CheckProject
  database: ScratchDatabase
  /**
   * The service's own database (its URL; sqlite:///<path> for SQLite). The check refuses to start when alembic
   * would use it: a check must never migrate the live database.
   */
  live?: string
  logger?: Logger
  signal?: AbortSignal
}

export interface MigrationCheckResult {
  ok: boolean
  /** The migration rolled back and re-applied: an alembic revision id or a SQL version. */
  migration?: string
  /** Schema differences between before and after ("table x is missing after"). */
  differences: string[]
  /** One line for the PR check. */
  message: string
  /** The schema after upgrade head and after the round trip, as text (SQLite's .schema; a listing for PostgreSQL). */
  schemaBefore?: string
  schemaAfter?: string
}

interface Scratch {
  url: string
  dump(): Promise<{ model: SchemaModel; text: string }>
  drop(): Promise<void>
}

export async function checkMigrations(options: CheckMigrationsOptions): Promise<MigrationCheckResult> {
  const { project, database } = options
  if (project.kind === 'sql' && database.kind !== 'postgres')
    throw new UserError(
      'SQL migrations are checked on PostgreSQL — give a postgres scratch database (adminUrl)'
    )
  const scratch = database.kind === 'sqlite' ? sqliteScratch() : await postgresScratch(database.adminUrl)
  options.logger?.info(
    `scratch database: ${database.kind === 'sqlite' ? scratch.url : 'a new PostgreSQL database'}`
  )
  try {
    return project.kind === 'alembic'
      ? await checkAlembic(project, scratch, options)
      : await checkSql(project, scratch, options)
  } finally {
    await scratch.drop()
  }
}

/** Runs one step of the round trip; a failure becomes a failed check naming the migration. */
async function step<T>(
  fn: () => Promise<T>,
  fail: (message: string) => MigrationCheckResult
): Promise<{ value: T } | { result: MigrationCheckResult }> {
  try {
    return { value: await fn() }
  } catch (error) {
    if (error instanceof UserError) throw error
    return { result: fail(messageOf(error)) }
  }
}

async function checkAlembic(
  project: Extract<CheckProject, { kind: 'alembic' }>,
  scratch: Scratch,
  options: CheckMigrationsOptions
): Promise<MigrationCheckResult> {
  // alembic is pointed at the scratch database whatever env.py reads: a copy of alembic.ini whose sqlalchemy.url
  // is the scratch database (a stock env.py reads that), and the URL variable too (for env.py files that read it).
  const ini = project.config ?? 'alembic.ini'
  const python = alembicPython(project.alembicBin)
  const forced = await forcedIni({ projectDir: project.projectDir, ini, python }, scratch.url)
  try {
    const alembic = createAlembic({
      projectDir: project.projectDir,
      config: forced.file,
      alembicBin: project.alembicBin,
      env: { [project.urlEnv ?? 'DATABASE_URL']: scratch.url },
      logger: options.logger,
      signal: options.signal
    })
    refuseUnlessScratch(await alembic.database(), scratch, project, options.live)
    return await roundTrip(alembic, scratch)
  } finally {
    await forced.remove()
  }
}

/** Refuses (nothing ran) unless the database env.py would connect to is the scratch one — never the live one. */
function refuseUnlessScratch(
  uses: AlembicDatabase | undefined,
  scratch: Scratch,
  project: Extract<CheckProject, { kind: 'alembic' }>,
  live: string | undefined
): void {
  const env = path.join(project.projectDir, project.config ?? 'alembic.ini')
  const fix =
    "make env.py take the URL from alembic's config (config.get_main_option('sqlalchemy.url'), as `alembic init` writes it) " +
    `or from $${project.urlEnv ?? 'DATABASE_URL'}`
  if (uses && live && sameDatabase(uses, databaseOfUrl(live, project.projectDir)))
    throw new UserError(
      `check-migrations refused before running anything: the env.py of ${env} connects to the live database ` +
        `(${describeDatabase(uses)}) even when sqlalchemy.url and $${project.urlEnv ?? 'DATABASE_URL'} name a scratch ` +
        `database — the check would migrate production. ${fix}`,
      'bad_config'
    )
  if (!uses || !sameDatabase(uses, databaseOfUrl(scratch.url, project.projectDir)))
    throw new UserError(
      `check-migrations refused before running anything: the env.py of ${env} ` +
        (uses ? `connects to ${describeDatabase(uses)}` : 'creates no SQLAlchemy engine') +
        ` even when sqlalchemy.url and $${project.urlEnv ?? 'DATABASE_URL'} name the scratch database — ${fix}`,
      'bad_config'
    )
}

async function roundTrip(
  alembic: ReturnType<typeof createAlembic>,
  scratch: Scratch
): Promise<MigrationCheckResult> {
  await alembic.preflight()
  const up = await step(
    () => alembic.upgrade('head'),
    m => failed(undefined, `upgrade head on an empty database failed: ${m}`)
  )
  if ('result' in up) return up.result
  const head = up.value[0] ?? 'base'
  const before = await scratch.dump()
  const down = await step(
    () => alembic.downgrade('-1'),
    m => failed(head, `migration ${head}: downgrade -1 failed: ${m}`, before.text)
  )
  if ('result' in down) return down.result
  const again = await step(
    () => alembic.upgrade('head'),
    m => failed(head, `migration ${head} does not upgrade again after its downgrade: ${m}`, before.text)
  )
  if ('result' in again) return again.result
  return compare(head, before, await scratch.dump())
}

async function checkSql(
  project: Extract<CheckProject, { kind: 'sql' }>,
  scratch: Scratch,
  options: CheckMigrationsOptions
): Promise<MigrationCheckResult> {
  const ups = listUpScripts(project.migrationsDir)
  const downs = listDownScripts(project.rollbackDir ?? path.join(project.migrationsDir, 'rollback'))
  const newest = ups[ups.length - 1]
  if (!newest)
    throw new UserError(`no up scripts (<version>_<name>.sql) in ${project.migrationsDir} — check the path`)
  const previous = ups[ups.length - 2]?.version ?? 0
  const migration = String(newest.version)
  const connection = { url: scratch.url }
  // A folder that is not the whole history starts from a copy of the live schema (read, never changed).
  const missing = options.live?.startsWith('postgres')
    ? await versionsNotInFolder(options.live, ups, project.table).catch((e: unknown) => {
        options.logger?.warn(
          `could not read the live database's ${project.table ?? 'schema_migrations'}: ${messageOf(e)}`
        )
        return []
      })
    : []
  let baseline = ''
  if (missing.length > 0) {
    await copySchema(options.live as string, scratch.url, project.table)
    const why = `versions ${missing.join(', ')} are not in ${project.migrationsDir}`
    baseline = ` (from a copy of the live database's schema: ${why})`
    options.logger?.info(`the scratch database starts from a copy of the live database's schema: ${why}`)
  }
  const applied = baseline ? await readAppliedVersions(connection, project.table) : []
  const up = await step(
    () => runUp({ connection, scripts: ups.filter(u => !applied.includes(u.version)), table: project.table }),
    m =>
      failed(
        undefined,
        baseline
          ? `applying the up scripts to a copy of the live schema failed: ${m}`
          : `applying the up scripts to an empty database failed: ${m}` +
              (ups[0] && ups[0].version > 1
                ? ` — if the folder does not hold every migration since the first, run the check where the live database (database.url) can be read: its schema is copied to start from`
                : '')
      )
  )
  if ('result' in up) return up.result
  const before = await scratch.dump()
  const plan = planDown(newest.version, previous, downs, [newest.version])
  if (plan.missing.length > 0)
    return failed(
      migration,
      `migration ${migration} has no down script (${newest.version}_${newest.name}_down.sql)`
    )
  const down = await runDown({
    connection,
    plan,
    table: project.table,
    logger: options.logger,
    signal: options.signal
  })
  if (!down.ok)
    return failed(
      migration,
      `migration ${migration}: down script failed: ${down.failed?.message ?? 'aborted'}`,
      before.text
    )
  const again = await step(
    () => runUp({ connection, scripts: [newest], table: project.table }),
    m =>
      failed(
        migration,
        `migration ${migration} does not apply again after its down script: ${m}`,
        before.text
      )
  )
  if ('result' in again) return again.result
  const result = compare(migration, before, await scratch.dump())
  return { ...result, message: result.message + baseline }
}

function failed(migration: string | undefined, message: string, schemaBefore?: string): MigrationCheckResult {
  return { ok: false, migration, differences: [], message, schemaBefore }
}

function compare(
  migration: string,
  before: { model: SchemaModel; text: string },
  after: { model: SchemaModel; text: string }
): MigrationCheckResult {
  const differences = compareSchemas(before.model, after.model)
  return {
    ok: differences.length === 0,
    migration,
    differences,
    message:
      differences.length === 0
        ? `migration ${migration} reverses: upgrade → downgrade → upgrade gives the same schema`
        : `migration ${migration} does not reverse — its downgrade is not the inverse of its upgrade: ${differences.join('; ')}`,
    schemaBefore: before.text,
    schemaAfter: after.text
  }
}

// ---------------------------------------------------------------------------------------------------------
// SQLite

function sqliteScratch(): Scratch {
  const dir = mkdtempSync(path.join(tmpdir(), 'backout-check-'))
  const file = path.join(dir, 'scratch.db')
  return {
    url: `sqlite:///${file}`,
    dump: () => dumpSqliteSchema(file),
    drop: () => Promise.resolve(rmSync(dir, { recursive: true, force: true }))
  }
}

// ---------------------------------------------------------------------------------------------------------
// PostgreSQL

async function postgresScratch(adminUrl: string): Promise<Scratch> {
  const name = `backout_check_${randomBytes(6).toString('hex')}`
  const admin = new Client({ connectionString: adminUrl })
  await admin.connect()
  try {
    await admin.query(`CREATE DATABASE "${name}"`)
  } catch (error) {
    throw new OperationError(
      `creating the scratch database ${name} failed: ${messageOf(error)} — the check needs CREATEDB`
    )
  } finally {
    await admin.end().catch(() => undefined)
  }
  // postgresql://: the scheme SQLAlchemy (alembic) knows; node-postgres takes either.
  const url = `postgresql:${adminUrl.replace(/^[a-z]+:/, '')}`.replace(
    /^(postgresql:\/\/[^/?#]*)(\/[^?#]*)?/,
    (_, authority: string) => `${authority}/${name}`
  )
  return {
    url,
    dump: () => dumpPostgresSchema(url),
    drop: async () => {
      const c = new Client({ connectionString: adminUrl })
      await c.connect()
      try {
        await c.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)
      } finally {
        await c.end().catch(() => undefined)
      }
    }
  }
}
