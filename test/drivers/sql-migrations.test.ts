import path from 'node:path'
import { Client } from 'pg'
import { UserError } from '../../src/core/errors'
import { MemoryLogger } from '../../src/core/logger'
import { planDown } from '../../src/core/migration-plan'
import { psql } from '../../src/drivers/postgres-cluster'
import {
  MIGRATION_LOCK_NAME,
  advisoryLockKey,
  downSql,
  listDownScripts,
  listUpScripts,
  loadDownPlan,
  readAppliedVersions,
  runDown,
  runUp,
  withAdvisoryLock
} from '../../src/drivers/sql-migrations'
import { type TestCluster, startTestCluster } from '../support/pg-test-cluster'

/** The SpaceTime runbook's Method 1 against a real PostgreSQL cluster. */
const FIX = path.join(__dirname, '..', 'fixtures', 'sql-migrations')
const MIGRATIONS = path.join(FIX, 'migrations')
const ROLLBACK = path.join(MIGRATIONS, 'rollback')

let cluster: TestCluster
let n = 0
let db: string
let url: string

beforeAll(async () => {
  cluster = await startTestCluster()
})
afterAll(async () => {
  await cluster?.stop()
})

/** A fresh database at schema 105 with a few users and sessions (the v2.5.0 state). */
beforeEach(async () => {
  db = `spacetime_${++n}`
  await psql(cluster, 'postgres', `CREATE DATABASE ${db};`)
  url = cluster.url(db)
  await runUp({ connection: { url }, scripts: listUpScripts(MIGRATIONS) })
  await psql(
    cluster,
    db,
    `INSERT INTO users (email, preferences) VALUES ('ada@example.com', '{"theme":"dark"}'), ('bob@example.com', '{}');
     INSERT INTO user_sessions (user_id, token, expires_at) VALUES (1, 't1', now() + interval '1 day');`
  )
})

const q = (sql: string) => psql(cluster, db, sql).then(s => s.trim())
const hasPreferences = () =>
  q(
    "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'preferences'"
  )

test('lists scripts and plans from schema_migrations', async () => {
  expect(listUpScripts(MIGRATIONS).map(s => s.version)).toEqual([103, 104, 105])
  expect(listDownScripts(ROLLBACK).map(s => path.basename(s.file))).toEqual([
    '105_add_user_preferences_down.sql',
    '104_add_user_sessions_down.sql',
    '103_create_users_down.sql'
  ])
  expect(await readAppliedVersions({ url })).toEqual([105, 104, 103])
  const plan = await loadDownPlan({ connection: { url }, rollbackDir: ROLLBACK, target: 103 })
  expect(plan.steps.map(s => s.version)).toEqual([105, 104])
  expect(() => listDownScripts(path.join(FIX, 'nope'))).toThrow(/does not exist/)
})

test('--dry-run SQL is exactly what runs, and changes nothing', async () => {
  const plan = await loadDownPlan({ connection: { url }, rollbackDir: ROLLBACK, target: 104 })
  const sql = downSql(plan)
  expect(sql).toContain('-- version 105: 105_add_user_preferences_down.sql\nBEGIN;\n')
  expect(sql).toContain('ALTER TABLE users DROP COLUMN IF EXISTS preferences;')
  expect(sql).toContain('DELETE FROM schema_migrations WHERE version = 105;')
  expect(sql.match(/^BEGIN;$/gm)).toHaveLength(1) // the script's own BEGIN was replaced, not doubled
  expect(sql.match(/^COMMIT;$/gm)).toHaveLength(1)
  expect(await hasPreferences()).toBe('1')
  expect(() => downSql(planDown(106, 104, listDownScripts(ROLLBACK)))).toThrow(
    /no down script for version 106/
  )
})

test('rolls 105 back to 104: users.preferences gone, schema_migrations max is 104, rows intact', async () => {
  const plan = await loadDownPlan({ connection: { url }, rollbackDir: ROLLBACK, target: 104 })
  const logger = new MemoryLogger()
  const result = await runDown({ connection: { url }, plan, logger })
  expect(result).toEqual({ ok: true, completed: [105], remaining: [], aborted: false })
  expect(await hasPreferences()).toBe('0')
  expect(await q('SELECT max(version) FROM schema_migrations')).toBe('104')
  expect(await q("SELECT string_agg(email, ',' ORDER BY id) FROM users")).toBe(
    'ada@example.com,bob@example.com'
  )
  expect(await q('SELECT count(*) FROM user_sessions')).toBe('1')
  expect(logger.lines).toContain('info: rolling back version 105 (105_add_user_preferences_down.sql)')
})

test('rolls several versions back newest first, on a client the caller holds', async () => {
  const client = new Client({ connectionString: url })
  await client.connect()
  try {
    const plan = await loadDownPlan({ connection: { client }, rollbackDir: ROLLBACK, target: 103 })
    const result = await runDown({ connection: { client }, plan })
    expect(result.completed).toEqual([105, 104])
  } finally {
    await client.end()
  }
  expect(await q("SELECT count(*) FROM pg_tables WHERE tablename = 'user_sessions'")).toBe('0')
  expect(await q('SELECT max(version) FROM schema_migrations')).toBe('103')
})

test('a failing down script stops with its version and rolls back its own transaction: 105 stays intact', async () => {
  // 104's script is good, 105's fails half-way (after dropping the column).
  const scripts = [
    ...listDownScripts(path.join(FIX, 'failing-down', 'rollback')),
    ...listDownScripts(ROLLBACK).slice(1)
  ]
  const plan = planDown(105, 103, scripts, await readAppliedVersions({ url }))
  const result = await runDown({ connection: { url }, plan })
  expect(result.ok).toBe(false)
  expect(result.completed).toEqual([])
  expect(result.failed?.version).toBe(105)
  expect(result.failed?.file).toMatch(/failing-down\/rollback\/105_add_user_preferences_down\.sql$/)
  expect(result.failed?.message).toMatch(/relation "user_preference_audit" does not exist \(SQLSTATE 42P01\)/)
  expect(result.remaining).toEqual([104]) // stopped: 104 was not touched
  expect(await hasPreferences()).toBe('1')
  expect(await q('SELECT max(version) FROM schema_migrations')).toBe('105')
  expect(await q("SELECT preferences->>'theme' FROM users WHERE id = 1")).toBe('dark')
  expect(await q("SELECT count(*) FROM pg_tables WHERE tablename = 'user_sessions'")).toBe('1')
})

test('a down script that forgets to delete its schema_migrations row fails, and its changes are rolled back', async () => {
  const plan = planDown(105, 104, listDownScripts(path.join(FIX, 'forgot-row', 'rollback')))
  const result = await runDown({ connection: { url }, plan })
  expect(result.failed?.version).toBe(105)
  expect(result.failed?.message).toMatch(
    /version 105 is still in schema_migrations — the down script must DELETE its own row/
  )
  expect(await hasPreferences()).toBe('1')
})

test('a missing down script is refused before anything runs (the caller restores instead)', async () => {
  const plan = planDown(
    105,
    103,
    listDownScripts(ROLLBACK).filter(s => s.version !== 104)
  )
  expect(plan.missing).toEqual([104])
  await expect(runDown({ connection: { url }, plan })).rejects.toThrow(
    /no down script for version 104 .* Method 2/
  )
  expect(await hasPreferences()).toBe('1')
})

test('an abort stops between versions', async () => {
  const plan = await loadDownPlan({ connection: { url }, rollbackDir: ROLLBACK, target: 103 })
  const controller = new AbortController()
  controller.abort()
  const result = await runDown({ connection: { url }, plan, signal: controller.signal })
  expect(result).toMatchObject({ ok: false, aborted: true, completed: [], remaining: [105, 104] })
  expect(await q('SELECT max(version) FROM schema_migrations')).toBe('105')
})

test('the advisory lock is held for the whole rollback; a second attempt is refused', async () => {
  const plan = await loadDownPlan({ connection: { url }, rollbackDir: ROLLBACK, target: 104 })
  const result = await withAdvisoryLock(url, MIGRATION_LOCK_NAME, async client => {
    const second = await withAdvisoryLock(url, MIGRATION_LOCK_NAME, () => Promise.resolve('ran')).catch(
      (e: unknown) => e
    )
    expect(second).toBeInstanceOf(UserError)
    expect((second as UserError).reasonCode).toBe('migration_running')
    expect((second as Error).message).toMatch(
      new RegExp(
        `a migration is running on database ${db}: advisory lock backout:migrations is held by backend pid \\d+`
      )
    )
    const key = advisoryLockKey(MIGRATION_LOCK_NAME).toString()
    const held = await psql(cluster, db, `SELECT pg_try_advisory_lock(${key});`) // another session: refused
    expect(held.trim()).toBe('f')
    return runDown({ connection: { client }, plan })
  })
  expect(result.ok).toBe(true)
  // Released afterwards: the next attempt gets it.
  expect(await withAdvisoryLock(url, MIGRATION_LOCK_NAME, () => Promise.resolve('ran'))).toBe('ran')
  // Released when the work fails too.
  await expect(withAdvisoryLock(url, 'k', () => Promise.reject(new Error('boom')))).rejects.toThrow('boom')
  expect(await withAdvisoryLock(url, 'k', () => Promise.resolve(1))).toBe(1)
})
