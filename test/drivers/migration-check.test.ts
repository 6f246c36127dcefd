import { readdirSync } from 'node:fs'
import path from 'node:path'
import { checkMigrations } from '../../src/drivers/migration-check'
import { psql } from '../../src/drivers/postgres-cluster'
import { type TestCluster, startTestCluster } from '../support/pg-test-cluster'

/** The VBRPG prevention step (upgrade head → downgrade -1 → upgrade head, compare) on real scratch databases. */
const FIX = path.join(__dirname, '..', 'fixtures')
const SQL = path.join(FIX, 'sql-migrations')

describe('alembic on a scratch SQLite file', () => {
  test('the good project passes, though batch mode rewrote the table', async () => {
    const result = await checkMigrations({
      project: { kind: 'alembic', projectDir: path.join(FIX, 'alembic-app') },
      database: { kind: 'sqlite' }
    })
    expect(result).toMatchObject({ ok: true, migration: 'c3f0c0de0003', differences: [] })
    expect(result.message).toMatch(/migration c3f0c0de0003 reverses/)
    expect(result.schemaBefore).toContain('CREATE INDEX ix_game_rooms_host_player_id')
    // The stored CREATE TABLE text differs after the round trip; the schema does not.
    expect(result.schemaAfter).not.toBe(result.schemaBefore)
  })

  test('the bad project fails, naming the revision whose downgrade is not the inverse', async () => {
    const result = await checkMigrations({
      project: { kind: 'alembic', projectDir: path.join(FIX, 'alembic-app-bad') },
      database: { kind: 'sqlite' }
    })
    expect(result.ok).toBe(false)
    expect(result.migration).toBe('d4f0c0de0004')
    expect(result.differences).toEqual(['game_rooms: index ix_game_rooms_host_player_id is missing after'])
    expect(result.message).toMatch(/^migration d4f0c0de0004 does not reverse — /)
  })

  test('several heads are refused', async () => {
    await expect(
      checkMigrations({
        project: { kind: 'alembic', projectDir: path.join(FIX, 'alembic-app-branched') },
        database: { kind: 'sqlite' }
      })
    ).rejects.toThrow(/2 heads/)
  })
})

describe('SQL migrations on a scratch PostgreSQL database', () => {
  let cluster: TestCluster
  beforeAll(async () => {
    cluster = await startTestCluster()
  })
  afterAll(async () => {
    await cluster?.stop()
  })
  const databases = async () =>
    (await psql(cluster, 'postgres', 'SELECT datname FROM pg_database ORDER BY 1')).trim()

  test('103–105 reverse; the scratch database is dropped', async () => {
    const before = await databases()
    const result = await checkMigrations({
      project: { kind: 'sql', migrationsDir: path.join(SQL, 'migrations') },
      database: { kind: 'postgres', adminUrl: cluster.url('postgres') }
    })
    expect(result).toMatchObject({ ok: true, migration: '105', differences: [] })
    expect(result.schemaBefore).toMatch(/TABLE users[\s\S]*preferences jsonb NOT NULL DEFAULT '\{\}'::jsonb/)
    expect(await databases()).toBe(before)
  })

  test('a down script that is not the inverse fails, naming the version', async () => {
    const result = await checkMigrations({
      project: {
        kind: 'sql',
        migrationsDir: path.join(SQL, 'migrations'),
        rollbackDir: path.join(SQL, 'not-inverse', 'rollback')
      },
      database: { kind: 'postgres', adminUrl: cluster.url('postgres') }
    })
    expect(result).toMatchObject({
      ok: false,
      migration: '105',
      differences: ['user_sessions: index idx_user_sessions_user_id is missing after']
    })
  })

  test('a failing down script fails the check, naming the version', async () => {
    const result = await checkMigrations({
      project: {
        kind: 'sql',
        migrationsDir: path.join(SQL, 'migrations'),
        rollbackDir: path.join(SQL, 'failing-down', 'rollback')
      },
      database: { kind: 'postgres', adminUrl: cluster.url('postgres') }
    })
    expect(result.ok).toBe(false)
    expect(result.migration).toBe('105')
    expect(result.message).toMatch(
      /migration 105: down script failed: relation "user_preference_audit" does not exist/
    )
  })
})

test('the fixtures stay clean (no __pycache__ written into the tree)', () => {
  const versions = path.join(FIX, 'alembic-app', 'alembic', 'versions')
  expect(readdirSync(versions).filter(f => !f.endsWith('.py'))).toEqual([])
})
