import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { UserError } from '../../src/core/errors'
import { MemoryLogger } from '../../src/core/logger'
import { loadConfig } from '../../src/drivers/config-file'
import { pgQuery } from '../../src/drivers/database'
import { urlForDatabase } from '../../src/drivers/postgres-backup'
import { rollback } from '../../src/engine/rollback'
import { createService } from '../../src/engine/service'
import { runCli, startSandbox, type TestSandbox } from '../support/cli'

/**
 * Issue #12.2: a restore must not destroy what it was not asked to restore. The sandbox's cluster gets a second
 * database ("other", with rows) after its release snapshot. Level 2's fallback (a failing down script → Method 2)
 * used to restore the whole cluster from the base backup: "other" vanished and the run exited 0. Now the plan says
 * which path and which databases, the restore takes the logical path for the configured database alone, "other"
 * keeps its rows; a Level 3 --to-time (which needs the whole cluster) is refused with exit 2 and the reason; and
 * once "other" is gone again the whole-cluster path is allowed (the plan names every database it replaces).
 */
jest.setTimeout(150_000)

let sb: TestSandbox | undefined
afterAll(async () => {
  await sb?.down()
})

test('a second database created after the backup survives Level 2 Method 2; Level 3 --to-time is refused', async () => {
  sb = await startSandbox()
  const config = loadConfig(sb.config)
  if (config.database?.kind !== 'postgres') throw new Error('expected PostgreSQL')
  const url = config.database.url
  const log = new MemoryLogger()
  const service = createService(config, log)
  const release = readdirSync(path.join(sb.dir, 'backups'))
    .filter(n => /^\d{8}-\d{6}$/.test(n))
    .sort()[0]!

  await pgQuery(urlForDatabase(url, 'postgres'), 'CREATE DATABASE other')
  const other = urlForDatabase(url, 'other')
  await pgQuery(
    other,
    `CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 500) g`
  )
  const usersBefore = await pgQuery<{ n: string }>(url, 'SELECT count(*)::text AS n FROM users')

  // A down script that fails midway: Level 2 falls back to restoring the backup (Method 2).
  writeFileSync(
    path.join(sb.dir, 'migrations/rollback/105_add_user_preferences_down.sql'),
    readFileSync(
      path.join(
        __dirname,
        '../fixtures/sql-migrations/failing-down/rollback/105_add_user_preferences_down.sql'
      )
    )
  )
  const level2 = (dryRun: boolean) =>
    rollback(service, { level: 2, reason: 'scope test', dryRun, confirm: () => Promise.resolve(true) })

  const plan = await level2(true)
  expect(plan.error).toBeUndefined()
  const planned = plan.record.steps[0]?.detail ?? ''
  expect(planned).toMatch(/restore path: logical restore of database app alone/)
  expect(planned).toMatch(/database "other" was created after the backup/)

  const { record, error } = await level2(false)
  expect(error).toBeUndefined()
  expect(record.status).toBe('success')
  const dbStep = record.steps.find(s => s.name === 'Roll back database migrations')?.detail ?? ''
  expect(dbStep).toMatch(/fell back to restoring backup .* \(Method 2\)/)
  expect(dbStep).toMatch(/logical restore of/)
  // The second database is untouched; the configured one is the backup's.
  expect(await pgQuery<{ n: string }>(other, 'SELECT count(*)::text AS n FROM notes')).toEqual([{ n: '500' }])
  expect(await pgQuery<{ n: string }>(url, 'SELECT count(*)::text AS n FROM users')).toEqual(usersBefore)
  expect(await pgQuery<{ v: string }>(url, 'SELECT max(version)::text AS v FROM schema_migrations')).toEqual([
    { v: '104' }
  ])

  // Level 3 to a point in time would rewind the whole cluster: refused, exit 2, nothing changed.
  const toTime = new Date(Date.now() - 1000).toISOString()
  const refused = await runCli([
    '--config',
    sb.config,
    'rollback',
    '--level',
    '3',
    '--auto-confirm',
    '--target',
    release,
    '--to-time',
    toTime
  ])
  expect(refused.code).toBe(2)
  expect(refused.stdout + refused.stderr).toMatch(
    /--to-time needs a whole-cluster \(physical\) restore, which would not be safe here/
  )
  expect(refused.stdout + refused.stderr).toMatch(/database "other" was created after the backup/)
  expect(await pgQuery<{ n: string }>(other, 'SELECT count(*)::text AS n FROM notes')).toEqual([{ n: '500' }])
  const inProcess = await rollback(service, {
    level: 3,
    reason: 'scope',
    dryRun: true,
    target: release,
    toTime,
    confirm: () => Promise.resolve(true)
  })
  expect(inProcess.error).toBeInstanceOf(UserError)

  // With "other" gone the cluster holds only what the backup captured: the whole-cluster path, every database named.
  // (The logical restore kept the replaced copy of app as app_replaced_<time>: also not in the backup, so it blocks
  // the whole-cluster path too until it goes.)
  const kept = await pgQuery<{ d: string }>(
    url,
    "SELECT datname AS d FROM pg_database WHERE datname LIKE 'app\\_replaced\\_%'"
  )
  expect(kept).toHaveLength(1)
  for (const d of ['other', kept[0]!.d])
    await pgQuery(urlForDatabase(url, 'postgres'), `DROP DATABASE "${d}"`)
  const dry = await rollback(service, {
    level: 3,
    reason: 'scope',
    dryRun: true,
    target: release,
    confirm: () => Promise.resolve(true)
  })
  expect(dry.error).toBeUndefined()
  const restoreStep = dry.record.steps.find(s => s.name === 'Database restoration')?.detail ?? ''
  expect(restoreStep).toMatch(
    /restore path: whole cluster \(physical\), replaces databases app, postgres, template1/
  )
})
