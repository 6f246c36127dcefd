import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { stringify as toYaml } from 'yaml'
import { hasPostgres, startTestCluster, type TestCluster } from '../support/pg-test-cluster'
import { runCli } from '../support/cli'

/**
 * `backout check-migrations`, the VBRPG runbook's prevention step as a PR check, through the built CLI: real
 * alembic on a scratch SQLite file, and real PostgreSQL for SQL migrations.
 */
jest.setTimeout(90_000)

const FIXTURES = path.join(__dirname, '..', 'fixtures')
let dir: string
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'backout-check-cli-'))
})
afterEach(() => rmSync(dir, { recursive: true, force: true }))

/** A valid backout.yml around a database section; nothing it names needs to run for this verb. */
function configWith(database: Record<string, unknown>): string {
  const target = (port: number) => ({
    version: `v${port}`,
    upstream: `127.0.0.1:${port}`,
    process: { command: ['true'], pidFile: `run/${port}.pid` }
  })
  const file = path.join(dir, 'backout.yml')
  writeFileSync(
    file,
    toYaml({
      service: 'vbrpg',
      runtime: 'process',
      targets: { blue: target(18081), green: target(18082) },
      nginx: { upstreamFile: 'upstream.conf', url: 'http://127.0.0.1:18080' },
      backups: { dir: 'backups' },
      database
    })
  )
  return file
}

const alembicConfig = (project: string): string =>
  configWith({
    kind: 'sqlite',
    path: 'vbrpg.db',
    migrations: { kind: 'alembic', ini: path.join(project, 'alembic.ini'), command: ['/usr/bin/alembic'] }
  })

test('an Alembic project whose newest migration reverses passes (exit 0)', async () => {
  const res = await runCli([
    '--config',
    alembicConfig(path.join(FIXTURES, 'alembic-app')),
    'check-migrations'
  ])
  expect(res.stderr).not.toMatch(/Traceback/)
  expect(res.code).toBe(0)
  expect(res.stdout).toContain('migration c3f0c0de0003 reverses')
})

test('an Alembic migration whose downgrade is not the inverse fails (exit 1), naming it and the difference', async () => {
  const res = await runCli([
    '--config',
    alembicConfig(path.join(FIXTURES, 'alembic-app-bad')),
    '--json',
    'check-migrations'
  ])
  expect(res.code).toBe(1)
  const result = JSON.parse(res.stdout) as {
    ok: boolean
    migration: string
    message: string
    differences: string[]
  }
  expect(result.ok).toBe(false)
  expect(result.migration).toBe('d4f0c0de0004')
  expect(result.message).toMatch(/migration d4f0c0de0004 does not reverse/)
  expect(result.differences.join('\n')).toMatch(/ix_game_rooms_host_player_id is missing after/)
})

test('without database.migrations it refuses (exit 2) and says what to set', async () => {
  const res = await runCli(['--config', configWith({ kind: 'sqlite', path: 'x.db' }), 'check-migrations'])
  expect(res.code).toBe(2)
  expect(res.stderr).toContain('database.migrations is not set')
})

// Under CI a missing PostgreSQL fails these tests rather than skipping them.
const pg = hasPostgres || process.env.CI === 'true' ? describe : describe.skip
pg('SQL migrations on a scratch PostgreSQL database', () => {
  let cluster: TestCluster
  beforeAll(async () => {
    cluster = await startTestCluster()
  })
  afterAll(async () => {
    await cluster.stop()
  })
  const sqlConfig = (rollbackFrom: string): string => {
    const migrations = path.join(dir, 'migrations')
    cpSync(path.join(FIXTURES, 'sql-migrations/migrations'), migrations, { recursive: true })
    mkdirSync(path.join(migrations, 'rollback'), { recursive: true })
    cpSync(rollbackFrom, path.join(migrations, 'rollback'), { recursive: true })
    return configWith({
      kind: 'postgres',
      url: `postgresql://postgres@127.0.0.1:${cluster.port}/postgres`,
      migrations: { kind: 'sql', dir: 'migrations' }
    })
  }

  test('105 reverses (exit 0)', async () => {
    const res = await runCli([
      '--config',
      sqlConfig(path.join(FIXTURES, 'sql-migrations/migrations/rollback')),
      'check-migrations'
    ])
    expect(res.code).toBe(0)
    expect(res.stdout).toContain('migration 105 reverses')
  })

  test('a down script that is not the inverse fails (exit 1), naming version 105', async () => {
    const res = await runCli([
      '--config',
      sqlConfig(path.join(FIXTURES, 'sql-migrations/not-inverse/rollback')),
      'check-migrations'
    ])
    expect(res.code).toBe(1)
    expect(res.stdout).toMatch(/migration 105 does not reverse/)
  })
})
