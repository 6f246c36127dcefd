import { existsSync, readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { pgQuery } from '../../src/drivers/database'
import { logicalRestore, urlForDatabase } from '../../src/drivers/postgres-backup'
import { isAlive, readPid } from '../../src/drivers/process'
import { runCli, startSandbox, whoServes, type TestSandbox } from '../support/cli'

/**
 * kill -9 at every step boundary of Level 2 and Level 3 (the test hook BACKOUT_TEST_CRASH_AFTER_STEP makes the
 * process kill itself right after step N, the last step included: the run record is then still "running"), then
 * run the same command again: it resumes the interrupted run, converges to the target (Level 2: schema 104 and
 * every row kept; Level 3: each critical table equal, md5 of every row, to the release snapshot), and every safety
 * backup it relies on verifies.
 */
const LEVEL2_STEPS = 10
const LEVEL3_STEPS = 12
const tried = { 2: 0, 3: 0 }
afterAll(() => {
  process.stdout.write(
    `crash points tried: ${tried[2] + tried[3]} (Level 2: ${tried[2]}, Level 3: ${tried[3]})\n`
  )
})

interface RunJson {
  status: string
  resumedFrom?: { id: string; steps: string[] }
  safetyBackupId?: string
  backupId?: string
  to?: string
  steps: { name: string; status: string; detail: string }[]
}

function dbUrl(sb: TestSandbox): string {
  const m = /^\s*url:\s*(postgresql:\/\/\S+)\s*$/m.exec(readFileSync(sb.config, 'utf8'))
  if (!m?.[1]) throw new Error(`no database.url in ${sb.config}`)
  return m[1]
}

/** The release snapshot: the oldest backup that is not a safety backup. */
function releaseSnapshot(sb: TestSandbox): string {
  const ids = readdirSync(path.join(sb.dir, 'backups'))
    .filter(n => /^\d{8}-\d{6}$/.test(n))
    .sort()
  if (!ids[0]) throw new Error('the sandbox has no release snapshot')
  return ids[0]
}

/** md5 of every row of each critical table, in id order (users without the column migration 105 adds). */
async function fingerprint(url: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  const users = "id || ':' || name || ':' || email || ':' || created_at"
  for (const [t, row] of [
    ['users', users],
    ['sessions', 'x::text'],
    ['game_state', 'x::text']
  ] as const) {
    const [r] = await pgQuery<{ h: string | null; n: string }>(
      url,
      `SELECT md5(string_agg(${row}, '|' ORDER BY x.id)) AS h, count(*) AS n FROM ${t} x`
    )
    out[t] = `${r?.n ?? '?'} rows, md5 ${r?.h ?? 'empty'}`
  }
  return out
}

async function schemaVersion(url: string): Promise<string> {
  const [r] = await pgQuery<{ v: string }>(url, 'SELECT max(version)::text AS v FROM schema_migrations')
  return r?.v ?? 'none'
}

/** The critical tables as the release snapshot holds them: its dump restored into a scratch database. */
async function snapshotFingerprint(sb: TestSandbox, id: string): Promise<Record<string, string>> {
  const url = dbUrl(sb)
  const scratch = 'crash_reference'
  await logicalRestore({
    url: urlForDatabase(url, 'postgres'),
    database: scratch,
    file: path.join(sb.dir, 'backups', id, 'database/dump.tar.zst'),
    workDir: sb.dir
  })
  try {
    return await fingerprint(urlForDatabase(url, scratch))
  } finally {
    await pgQuery(urlForDatabase(url, 'postgres'), `DROP DATABASE IF EXISTS ${scratch} WITH (FORCE)`)
  }
}

/** Every safety backup the interrupted and the resumed run wrote verifies (checksums). */
async function expectSafetyBackupsVerify(sb: TestSandbox, record: RunJson): Promise<void> {
  expect(record.safetyBackupId).toBeDefined()
  const ids = new Set([record.safetyBackupId!])
  for (const f of readdirSync(path.join(sb.dir, 'state/runs')).filter(n => n.endsWith('.json'))) {
    const r = JSON.parse(readFileSync(path.join(sb.dir, 'state/runs', f), 'utf8')) as RunJson
    if (r.safetyBackupId) ids.add(r.safetyBackupId)
  }
  for (const id of ids) {
    const v = await runCli(['--config', sb.config, 'verify', '--quick', id])
    expect({ id, code: v.code, out: v.stdout + v.stderr }).toMatchObject({ id, code: 0 })
  }
}

function expectGreenStopped(sb: TestSandbox): void {
  const green = readPid(path.join(sb.dir, 'run/green.pid'))
  expect(green === undefined || !isAlive(green)).toBe(true)
}

/** Level 3 starts all services (runbook Step 7): green, the standby when the release snapshot was taken, runs again. */
function expectGreenRunning(sb: TestSandbox): void {
  const green = readPid(path.join(sb.dir, 'run/green.pid'))
  expect(green !== undefined && isAlive(green)).toBe(true)
}

async function crashThenRerun(sb: TestSandbox, level: 2 | 3, n: number): Promise<RunJson> {
  const target = releaseSnapshot(sb)
  const args = [
    '--config',
    sb.config,
    '--json',
    'rollback',
    '--level',
    String(level),
    '--auto-confirm',
    '--target',
    target
  ]
  const crashed = await runCli(args, { env: { BACKOUT_TEST_CRASH_AFTER_STEP: String(n) } })
  expect(crashed.code).not.toBe(0) // killed by SIGKILL
  expect(crashed.stdout).toBe('') // it died before printing its record
  tried[level]++
  const again = await runCli(args)
  const record = JSON.parse(again.stdout) as RunJson
  if (record.status !== 'success')
    process.stdout.write(
      `crash point ${level}/${n}: the second run ended ${record.status}: ${again.stderr.trim().split('\n').slice(-6).join(' | ')}\n`
    )
  expect({ code: again.code, status: record.status, stderr: again.stderr }).toMatchObject({
    code: 0,
    status: 'success'
  })
  expect(record.resumedFrom).toBeDefined()
  expect(record.resumedFrom!.steps).toHaveLength(n)
  expect(record.backupId).toBe(target)
  expect(record.to).toBe('v2.4.9')
  expect(existsSync(path.join(sb.dir, 'state/spacetime.lock'))).toBe(false)
  const history = readFileSync(path.join(sb.dir, 'rollback_history.log'), 'utf8').trim().split('\n')
  expect(history.at(-1)).toMatch(new RegExp(`LEVEL=${level} .*TO=v2\\.4\\.9 .*STATUS=success`))
  return record
}

const points = (steps: number): number[] => Array.from({ length: steps }, (_, i) => i + 1)

describe('Level 2', () => {
  test.concurrent.each(points(LEVEL2_STEPS))('killed after step %i converges on a second run', async n => {
    const sb = await startSandbox()
    try {
      const url = dbUrl(sb)
      // Rows written after the release: Level 2 (Method 1, the down scripts) must keep them.
      await pgQuery(
        url,
        "INSERT INTO users (name, email) SELECT 'late ' || g, 'late' || g || '@t.test' FROM generate_series(1, 25) g"
      )
      const before = await fingerprint(url)
      expect(await schemaVersion(url)).toBe('105')
      const record = await crashThenRerun(sb, 2, n)
      expect(await schemaVersion(url)).toBe('104')
      expect(await fingerprint(url)).toEqual(before)
      const [col] = await pgQuery<{ n: string }>(
        url,
        "SELECT count(*) AS n FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'preferences'"
      )
      expect(col?.n).toBe('0')
      expect(new Set(await whoServes(sb.nginxUrl, 20))).toEqual(new Set(['blue']))
      expectGreenStopped(sb)
      await expectSafetyBackupsVerify(sb, record)
    } finally {
      await sb.down()
    }
  })
})

describe('Level 3', () => {
  test.concurrent.each(points(LEVEL3_STEPS))('killed after step %i converges on a second run', async n => {
    const sb = await startSandbox()
    try {
      const url = dbUrl(sb)
      const target = releaseSnapshot(sb)
      const want = await snapshotFingerprint(sb, target)
      // The damage Level 3 recovers from.
      await pgQuery(url, "UPDATE users SET email = 'bad' || id || '@corrupt.test' WHERE id < 100")
      await pgQuery(url, 'DELETE FROM game_state WHERE id > 1500')
      expect(await fingerprint(url)).not.toEqual(want)
      const record = await crashThenRerun(sb, 3, n)
      expect(await fingerprint(url)).toEqual(want)
      expect(await schemaVersion(url)).toBe('104')
      expect(existsSync(path.join(sb.dir, 'state/level3-journal.json'))).toBe(false)
      expect(new Set(await whoServes(sb.nginxUrl, 20))).toEqual(new Set(['blue']))
      expectGreenRunning(sb)
      await expectSafetyBackupsVerify(sb, record)
    } finally {
      await sb.down()
    }
  })
})
