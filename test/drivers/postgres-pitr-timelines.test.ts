import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { UserError } from '../../src/core/errors'
import {
  baseBackup,
  physicalRestore,
  prepareWalArchive,
  walArchiveSettings
} from '../../src/drivers/postgres-backup'
import { psql, startCluster, stopCluster } from '../../src/drivers/postgres-cluster'
import { startTestCluster, type TestCluster } from '../support/pg-test-cluster'

/**
 * Point-in-time recovery after a point-in-time recovery (issue #12.3, #12.10). The first recovery puts the cluster
 * on timeline 2; the old timeline 1 goes on in the archive past the branch point (more segments than timeline 2 has).
 * A second recovery to a time on timeline 2 must follow 00000002.history rather than report a "WAL gap"; a time at
 * which the data only existed on the abandoned timeline 1 must be refused, clearly and with nothing touched; and no
 * recovery_target_* / restore_command is left in postgresql.auto.conf after a recovery. Target times come from the
 * server's clock_timestamp(), not from sleeps.
 */

let scratch: string
let cluster: TestCluster | undefined
beforeEach(() => {
  scratch = mkdtempSync(path.join(tmpdir(), 'backout-pitr2-'))
  chmodSync(scratch, 0o755)
})
afterEach(async () => {
  await cluster?.stop()
  cluster = undefined
  rmSync(scratch, { recursive: true, force: true })
})

async function sql(c: TestCluster, text: string): Promise<string> {
  return (await psql(c, 'postgres', text)).trim()
}

/** Inserts a row and returns the server's clock right after its commit. */
async function insertThenNow(c: TestCluster, label: string): Promise<Date> {
  await sql(c, `INSERT INTO events (label) VALUES ('${label}')`)
  return new Date(
    await sql(c, `SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`)
  )
}

async function labels(c: TestCluster): Promise<string[]> {
  const out = await sql(c, `SELECT label FROM events WHERE label NOT LIKE 'base %' ORDER BY id`)
  return out ? out.split('\n') : []
}

function recoveryLines(dataDir: string): string[] {
  return readFileSync(path.join(dataDir, 'postgresql.auto.conf'), 'utf8')
    .split('\n')
    .filter(l => /^\s*(restore_command|recovery_target\w*)\s*=/.test(l))
}

test('two point-in-time recoveries in a row, then a target on the abandoned timeline is refused', async () => {
  const archive = path.join(scratch, 'archive')
  prepareWalArchive(archive)
  const c = await startTestCluster(walArchiveSettings(archive, { archiveTimeoutSeconds: 60 }))
  cluster = c
  await sql(
    c,
    `CREATE TABLE events (id serial PRIMARY KEY, label text);
     INSERT INTO events (label) SELECT 'base ' || g FROM generate_series(1, 200) g;`
  )
  const base = path.join(scratch, 'base')
  await baseBackup({ cluster: c, outDir: base, label: 'pitr twice' })

  // Timeline 1: a good row, T1, then the bad change — and timeline 1 goes on for several more segments.
  const t1 = await insertThenNow(c, 'good 1')
  const abandonedAt = await insertThenNow(c, 'bad 1')
  for (let i = 0; i < 5; i++)
    await sql(c, `INSERT INTO events (label) VALUES ('bad 1.${i}'); SELECT pg_switch_wal();`)

  const first = await physicalRestore({
    cluster: c,
    logFile: c.logFile,
    backupDir: base,
    walArchiveDir: archive,
    targetTime: t1
  })
  expect(first.stoppedBefore).toBeDefined()
  expect(await labels(c)).toEqual(['good 1'])
  expect(await sql(c, 'SELECT timeline_id FROM pg_control_checkpoint()')).toBe('2')
  // #12.10: the recovery settings are gone from postgresql.auto.conf once the recovery is done.
  expect(recoveryLines(c.dataDir)).toEqual([])
  expect(existsSync(path.join(archive, '00000002.history'))).toBe(true)

  // Timeline 2: another good row, T2, another bad change.
  const t2 = await insertThenNow(c, 'good 2')
  await insertThenNow(c, 'bad 2')

  // The same base backup (timeline 1), a target on timeline 2: the WAL path goes 1 → 2 at the branch point.
  const second = await physicalRestore({
    cluster: c,
    logFile: c.logFile,
    backupDir: base,
    walArchiveDir: archive,
    targetTime: t2
  })
  expect(second.stoppedBefore && new Date(second.stoppedBefore.time) > t2).toBe(true)
  expect(await labels(c)).toEqual(['good 1', 'good 2'])
  expect(await sql(c, 'SELECT timeline_id FROM pg_control_checkpoint()')).toBe('3')
  expect(recoveryLines(c.dataDir)).toEqual([])
  // After a restart the settings are really gone (not only from the file).
  await stopCluster(c)
  await startCluster(c, c.logFile)
  expect(await sql(c, 'SHOW recovery_target_time')).toBe('')
  expect(await sql(c, 'SHOW restore_command')).toBe('')

  // A time when 'bad 1' existed only on timeline 1, which the cluster's history (3 ← 2 ← 1) abandoned.
  const siblings = readdirSync(scratch)
    .concat(readdirSync(path.dirname(c.dataDir)))
    .sort()
  const refused = await physicalRestore({
    cluster: c,
    logFile: c.logFile,
    backupDir: base,
    walArchiveDir: archive,
    targetTime: new Date(abandonedAt.getTime() + 1)
  }).catch((e: unknown) => e)
  expect(refused).toBeInstanceOf(UserError)
  expect((refused as Error).message).toMatch(/is on abandoned timeline 1/)
  expect((refused as Error).message).not.toMatch(/WAL gap/)
  // Nothing was touched: same directories, the cluster still answers with the same rows, still on timeline 3.
  expect(
    readdirSync(scratch)
      .concat(readdirSync(path.dirname(c.dataDir)))
      .sort()
  ).toEqual(siblings)
  expect(await labels(c)).toEqual(['good 1', 'good 2'])
  expect(await sql(c, 'SELECT timeline_id FROM pg_control_checkpoint()')).toBe('3')
})
