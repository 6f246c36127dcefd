import { createHash } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { stringify as toYaml } from 'yaml'
import { loadConfig } from '../../src/drivers/config-file'
import { pgQuery } from '../../src/drivers/database'
import { psql } from '../../src/drivers/postgres-cluster'
import {
  addUsersRevisions,
  alembic,
  alembicInit,
  ALEMBIC,
  startScramCluster
} from '../support/alembic-project'
import { runCli, startSandbox, type TestSandbox } from '../support/cli'
import { minimalConfig } from '../support/minimal-config'
import { hasPostgres } from '../support/pg-test-cluster'

/**
 * `backout check-migrations` on the user's own setups, through the built CLI: the live database is read at most,
 * never changed — on projects made by `alembic init` (SQLite, and PostgreSQL with password auth), and on the
 * sandbox, whose migrations folder holds only the newest migration.
 */
jest.setTimeout(120_000)

let dir: string
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'backout-check-live-'))
})
afterEach(() => rmSync(dir, { recursive: true, force: true }))

function configWith(database: Record<string, unknown>): string {
  const file = path.join(dir, 'backout.yml')
  writeFileSync(file, toYaml({ ...minimalConfig, database }))
  return file
}

// Under CI a missing PostgreSQL fails these tests rather than skipping them.
const pg = hasPostgres || process.env.CI === 'true' ? describe : describe.skip

pg('the sandbox: migrations/ holds only 105, the rest of the history is in the live database', () => {
  let sb: TestSandbox
  beforeAll(async () => {
    sb = await startSandbox()
  })
  afterAll(async () => {
    await sb?.down()
  })
  const liveSchema = async (): Promise<string> => {
    const config = loadConfig(sb.config)
    if (config.database?.kind !== 'postgres') throw new Error('the sandbox runs on PostgreSQL here')
    const rows = await pgQuery<{ v: string; cols: string; users: string }>(
      config.database.url,
      `SELECT (SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations) AS v,
              (SELECT string_agg(column_name, ',' ORDER BY column_name) FROM information_schema.columns WHERE table_name = 'users') AS cols,
              (SELECT count(*)::text FROM users) AS users`
    )
    return JSON.stringify(rows)
  }

  test('105 reverses, checked on a copy of the live schema; the live database is not changed, before and after a rollback', async () => {
    const config = loadConfig(sb.config)
    if (config.database?.kind !== 'postgres') throw new Error('the sandbox runs on PostgreSQL here')
    const before = await liveSchema()
    expect(before).toContain('101,102,103,104,105')
    const res = await runCli(['--config', sb.config, 'check-migrations'])
    expect(res.stdout).toContain('migration 105 reverses')
    expect(res.stdout).toContain('versions 101, 102, 103, 104 are not in')
    expect(res.code).toBe(0)
    expect(await liveSchema()).toBe(before)

    // After the rollback (105's down script on the live database) the check must not bring 105 back.
    await pgQuery(
      config.database.url,
      readFileSync(path.join(sb.dir, 'migrations/rollback/105_add_user_preferences_down.sql'), 'utf8')
    )
    const rolledBack = await liveSchema()
    expect(rolledBack).not.toContain('105')
    const again = await runCli(['--config', sb.config, 'check-migrations'])
    expect(again.stdout).toContain('migration 105 reverses')
    expect(again.code).toBe(0)
    expect(await liveSchema()).toBe(rolledBack)
  })
})

/**
 * It never touches the live database (issue #12.1): on a project made by `alembic init`, whose env.py reads
 * sqlalchemy.url from alembic.ini and ignores DATABASE_URL, the check runs on a scratch database all the same — and
 * refuses to start when env.py would connect to the live one whatever it is told.
 */
const sha = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex')

describe('SQLite, stock alembic init project', () => {
  /** The live database at the first revision: the second was rolled back (the state a check must not undo). */
  async function rolledBackProject(): Promise<{
    project: string
    db: string
    config: string
    first: string
  }> {
    const project = path.join(dir, 'backend')
    mkdirSync(project)
    // Relative, as users write it: alembic resolves it from the directory it runs in.
    await alembicInit(project, 'sqlite:///app.db')
    const [first] = await addUsersRevisions(project)
    await alembic(project, 'upgrade', 'head')
    await alembic(project, 'downgrade', '-1')
    const db = path.join(project, 'app.db')
    const config = configWith({
      kind: 'sqlite',
      path: db,
      migrations: { kind: 'alembic', ini: path.join(project, 'alembic.ini'), command: [ALEMBIC] }
    })
    return { project, db, config, first }
  }

  test('the check passes on a scratch file; the live database keeps its bytes and its revision', async () => {
    const { project, db, config, first } = await rolledBackProject()
    const before = sha(db)
    const res = await runCli(['--config', config, 'check-migrations'])
    expect(res.stderr).not.toMatch(/Traceback/)
    expect(res.stdout).toMatch(/migration [0-9a-f]+ reverses/)
    expect(res.code).toBe(0)
    expect(sha(db)).toBe(before)
    expect(await alembic(project, 'current')).toContain(first)
    // Nothing of the check left in the project (the generated alembic.ini lives in a temp dir).
    expect(readFileSync(path.join(project, 'alembic.ini'), 'utf8')).toContain(
      'sqlalchemy.url = sqlite:///app.db'
    )
  })

  test('an env.py that hard-codes the live database is refused (exit 2) before anything runs', async () => {
    const { project, db, config, first } = await rolledBackProject()
    const envPy = path.join(project, 'migrations', 'env.py')
    // A user's env.py that ignores alembic's config: the engine is made from a literal URL.
    writeFileSync(
      envPy,
      readFileSync(envPy, 'utf8').replace(
        /connectable = engine_from_config\([\s\S]*?\)\n/,
        () => 'from sqlalchemy import create_engine\n    connectable = create_engine("sqlite:///app.db")\n'
      )
    )
    expect(readFileSync(envPy, 'utf8')).toContain('create_engine("sqlite:///app.db")')
    const before = sha(db)
    const res = await runCli(['--config', config, 'check-migrations'])
    expect(res.code).toBe(2)
    expect(res.stderr).toContain('connects to the live database')
    expect(res.stderr).toContain(`SQLite ${db}`)
    expect(sha(db)).toBe(before)
    expect(await alembic(project, 'current')).toContain(first)
  })
})

pg('PostgreSQL with scram-sha-256 password auth, stock alembic init project', () => {
  let cluster: Awaited<ReturnType<typeof startScramCluster>>
  beforeAll(async () => {
    cluster = await startScramCluster()
  })
  afterAll(async () => {
    await cluster?.stop()
  })

  test('the check runs on a scratch database; the live database stays at its revision, no scratch is left', async () => {
    const project = path.join(dir, 'backend')
    mkdirSync(project)
    await alembicInit(project, cluster.appUrl())
    const [first] = await addUsersRevisions(project)
    await alembic(project, 'upgrade', 'head')
    await alembic(project, 'downgrade', '-1')
    const databases = async (): Promise<string> =>
      psql(cluster, 'postgres', 'SELECT datname FROM pg_database ORDER BY 1')
    const live = async (): Promise<string> =>
      psql(
        cluster,
        'app',
        "SELECT version_num FROM alembic_version; SELECT column_name FROM information_schema.columns WHERE table_name = 'users' ORDER BY 1"
      )
    const [dbsBefore, liveBefore] = [await databases(), await live()]
    expect(liveBefore).toContain(first)
    const config = configWith({
      kind: 'postgres',
      url: cluster.appUrl(),
      migrations: { kind: 'alembic', ini: path.join(project, 'alembic.ini'), command: [ALEMBIC] }
    })
    const res = await runCli(['--config', config, 'check-migrations'])
    expect(res.stderr).not.toMatch(/Traceback/)
    expect(res.stdout).toMatch(/migration [0-9a-f]+ reverses/)
    expect(res.code).toBe(0)
    expect(await live()).toBe(liveBefore)
    expect(await databases()).toBe(dbsBefore)
    expect(res.stdout + res.stderr).not.toContain('s3cret')
  })
})
