import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { parse as parseYaml, stringify as toYaml } from 'yaml'
import { exitCodeFor } from '../../src/core/errors'
import { MemoryLogger } from '../../src/core/logger'
import type { RunRecord } from '../../src/core/run-record'
import { timelineText } from '../../src/core/timeline'
import { createAlembic } from '../../src/drivers/alembic'
import { loadConfig } from '../../src/drivers/config-file'
import { pgQuery } from '../../src/drivers/database'
import { readPid } from '../../src/drivers/process'
import { downSql, loadDownPlan } from '../../src/drivers/sql-migrations'
import { sqliteExec } from '../../src/drivers/sqlite-cli'
import { isEscalatable } from '../../src/engine/escalate'
import { rollback } from '../../src/engine/rollback'
import { createService, type Service } from '../../src/engine/service'
import { takeSnapshot } from '../../src/engine/snapshot'
import { runCli, startSandbox, whoServes, type TestSandbox } from '../support/cli'

/**
 * Level 2 on a real sandbox: real nginx, the app as real processes, a real PostgreSQL cluster with the SpaceTime
 * SQL migrations (green v2.5.0 at schema 105 → blue v2.4.9 at schema 104), and real alembic on a SQLite file.
 */
jest.setTimeout(90_000)

const STEPS = [
  'Preparation',
  'Safety backup',
  'Stop current deployment',
  'Roll back database migrations',
  'Database integrity check',
  'Restore configuration',
  'Deploy previous version',
  'Wait for health',
  'Report',
  'Final validation'
]

let sb: TestSandbox | undefined
const setSandbox = (s: TestSandbox): void => {
  sb = s
}
afterEach(async () => {
  await sb?.down()
  sb = undefined
})

async function sandbox(): Promise<{ sb: TestSandbox; service: Service; url: string; log: MemoryLogger }> {
  sb = await startSandbox()
  const config = loadConfig(sb.config)
  const log = new MemoryLogger()
  if (config.database?.kind !== 'postgres') throw new Error('these tests need PostgreSQL for the sandbox')
  return { sb, service: createService(config, log), url: config.database.url, log }
}

/** What must survive the rollback: row counts and a digest of every user (without the new column). */
async function dataOf(url: string): Promise<{ counts: Record<string, number>; users: string }> {
  const [row] = await pgQuery<{ users: string; sessions: string; game_state: string; digest: string }>(
    url,
    `SELECT (SELECT count(*) FROM users)::text AS users, (SELECT count(*) FROM sessions)::text AS sessions,
            (SELECT count(*) FROM game_state)::text AS game_state,
            (SELECT md5(string_agg(id || ':' || name || ':' || email || ':' || created_at, ',' ORDER BY id)) FROM users) AS digest`
  )
  return {
    counts: {
      users: Number(row?.users),
      sessions: Number(row?.sessions),
      game_state: Number(row?.game_state)
    },
    users: row?.digest ?? ''
  }
}

async function schemaOf(url: string): Promise<{ max: number; preferences: boolean }> {
  const [row] = await pgQuery<{ max: string; pref: boolean }>(
    url,
    `SELECT (SELECT max(version) FROM schema_migrations)::text AS max,
            EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'preferences') AS pref`
  )
  return { max: Number(row?.max), preferences: Boolean(row?.pref) }
}

const level2 = (service: Service, extra: Partial<Parameters<typeof rollback>[1]> = {}) =>
  rollback(service, {
    level: 2,
    reason: 'migration 105 broke the lobby',
    dryRun: false,
    confirm: () => Promise.resolve(true),
    ...extra
  })

const read = (dir: string, rel: string): string => readFileSync(path.join(dir, rel), 'utf8')

test('--dry-run prints the exact down SQL and changes nothing; then Level 2 rolls v2.5.0/105 back to v2.4.9/104', async () => {
  const { sb, service, url } = await sandbox()
  const before = await dataOf(url)
  expect(await schemaOf(url)).toEqual({ max: 105, preferences: true })
  const upstream = read(sb.dir, 'nginx/upstream.conf')
  const backups = readdirSync(path.join(sb.dir, 'backups')).sort()

  // The dry run, through the CLI as an operator runs it.
  const expectedSql = downSql(
    await loadDownPlan({
      connection: { url },
      rollbackDir: path.join(sb.dir, 'migrations/rollback'),
      target: 104
    })
  )
  expect(expectedSql).toContain('ALTER TABLE users DROP COLUMN preferences;')
  const dry = await runCli(['--config', sb.config, 'rollback', '--level', '2', '--dry-run'])
  expect(dry.code).toBe(0)
  expect(dry.stdout).toContain(expectedSql.trimEnd())
  expect(dry.stdout).toMatch(/○ Roll back database migrations/)
  expect(await schemaOf(url)).toEqual({ max: 105, preferences: true })
  expect(read(sb.dir, 'config/.env')).toContain('IMAGE_TAG=v2.5.0')
  expect(read(sb.dir, 'nginx/upstream.conf')).toBe(upstream)
  expect(readdirSync(path.join(sb.dir, 'backups')).sort()).toEqual(backups)
  expect(existsSync(path.join(sb.dir, 'rollback_history.log'))).toBe(false)
  expect(new Set(await whoServes(sb.nginxUrl, 5))).toEqual(new Set(['green']))

  // The real thing.
  const { record, error } = await level2(service)
  expect(error).toBeUndefined()
  expect(record.status).toBe('success')
  expect(record.steps.map(s => s.name)).toEqual(STEPS)
  expect(record.from).toBe('v2.5.0')
  expect(record.to).toBe('v2.4.9')
  expect(record.backupId).toBe(backups.find(b => !b.startsWith('rollback-safety-')))
  expect(record.safetyBackupId).toMatch(/^rollback-safety-/)
  const dbStep = record.steps.find(s => s.name === 'Roll back database migrations')
  expect(dbStep?.detail).toMatch(/ran 105 down under advisory lock/)
  expect(record.dataLoss).toBeUndefined()
  console.log(timelineText(record))

  expect(await schemaOf(url)).toEqual({ max: 104, preferences: false })
  expect(await dataOf(url)).toEqual(before)
  expect(read(sb.dir, 'config/.env')).toBe('IMAGE_TAG=v2.4.9\nLOG_LEVEL=info\n')
  expect(new Set(await whoServes(sb.nginxUrl, 30))).toEqual(new Set(['blue']))
  expect(readPid(path.join(sb.dir, 'run/green.pid'))).toBeUndefined()
  expect(read(sb.dir, 'rollback_history.log')).toMatch(
    /^\[[^\]]+\] LEVEL=2 FROM=v2\.5\.0 TO=v2\.4\.9 DURATION=\d+ STATUS=success REASON="migration 105 broke the lobby"\n$/
  ) // The fallback's base backup was unpacked and checked in pre-flight, then not needed: nothing of it is left.
  expect(readdirSync(path.join(sb.dir, 'pg')).filter(n => n.includes('.backout-'))).toEqual([])
})

test('a down script that fails midway falls back to restoring the backup (Method 2), with no data lost', async () => {
  const { sb, service, url, log } = await sandbox()
  const before = await dataOf(url)
  const script = path.join(sb.dir, 'migrations/rollback/105_add_user_preferences_down.sql')
  // Without the down script, pre-flight plans the restore instead (and checks the backup can be restored).
  rmSync(script)
  const plan = await level2(service, { dryRun: true })
  expect(plan.error).toBeUndefined()
  expect(plan.record.steps[0]?.detail).toMatch(
    /no down script for version 105 — will restore the database from backup \d{8}-\d{6} \(Method 2/
  )
  expect(plan.record.steps.find(s => s.name === 'Roll back database migrations')?.status).toBe('planned')
  expect(await schemaOf(url)).toEqual({ max: 105, preferences: true })
  writeFileSync(
    script,
    readFileSync(
      path.join(
        __dirname,
        '../fixtures/sql-migrations/failing-down/rollback/105_add_user_preferences_down.sql'
      )
    )
  )
  const { record, error } = await level2(service)
  expect(error).toBeUndefined()
  expect(record.status).toBe('success')
  const dbStep = record.steps.find(s => s.name === 'Roll back database migrations')
  expect(dbStep?.detail).toMatch(
    /fell back to restoring backup \d{8}-\d{6} \(Method 2\) because the down script for version 105/
  )
  expect(dbStep?.detail).toMatch(/schema now at 104/)
  expect(log.lines.join('\n')).toMatch(/\[DB-ROLLBACK\] rollback script for version 105 failed/)
  expect(record.dataLoss?.note).toMatch(/Method 2/)
  console.log(timelineText(record))
  expect(await schemaOf(url)).toEqual({ max: 104, preferences: false })
  expect(await dataOf(url)).toEqual(before)
  expect(new Set(await whoServes(sb.nginxUrl, 20))).toEqual(new Set(['blue']))
  expect(read(sb.dir, 'rollback_history.log')).toMatch(/LEVEL=2 .*STATUS=success .*data-loss window/)
})

test('rollback --level 1 --escalate: Level 1 refuses (blue is down), Level 2 runs and succeeds', async () => {
  const { sb, url } = await sandbox()
  process.kill(readPid(path.join(sb.dir, 'run/blue.pid'))!, 'SIGKILL')
  const res = await runCli([
    '--config',
    sb.config,
    '--json',
    'rollback',
    '--level',
    '1',
    '--escalate',
    '--auto-confirm',
    '--reason',
    'green is failing'
  ])
  expect(res.code).toBe(0)
  const records = JSON.parse(res.stdout) as RunRecord[]
  expect(records.map(r => [r.level, r.status])).toEqual([
    [1, 'refused'],
    [2, 'success']
  ])
  expect(records[0]?.reasonCode).toBe('previous_unhealthy')
  expect(records[1]?.reason).toBe('green is failing (escalated from Level 1: previous_unhealthy)')
  expect(res.stderr).toMatch(/escalating to Level 2/)
  expect(await schemaOf(url)).toEqual({ max: 104, preferences: false })
  expect(new Set(await whoServes(sb.nginxUrl, 20))).toEqual(new Set(['blue']))
  const history = read(sb.dir, 'rollback_history.log').trim().split('\n')
  expect(history).toHaveLength(2)
  expect(history[0]).toMatch(/LEVEL=1 .*STATUS=refused/) // a refusal is recorded as refused (#12.8)
  expect(history[1]).toMatch(/LEVEL=2 FROM=v2\.5\.0 TO=v2\.4\.9 .*STATUS=success/)
})

const R2 = 'b2f0c0de0002'
const R3 = 'c3f0c0de0003'

/**
 * The sandbox (nginx, blue and green) with its database swapped for a VBRPG-like SQLite + Alembic project: the
 * release record of v2.4.9 at revision b2 with data, then the deployment of v2.5.0 (migration c3, green live).
 */
async function vbrpgDeployed() {
  const sb = await startSandbox()
  setSandbox(sb)
  // The same sandbox (nginx, blue and green), with its database swapped for a VBRPG-like SQLite + Alembic project.
  const project = path.join(sb.dir, 'vbrpg')
  cpSync(path.join(__dirname, '../fixtures/alembic-app'), project, { recursive: true })
  mkdirSync(path.join(project, 'data'), { recursive: true })
  const raw = parseYaml(read(sb.dir, 'backout.yml')) as Record<string, unknown>
  raw.database = {
    kind: 'sqlite',
    path: 'vbrpg/data/vbrpg.db',
    criticalTables: ['players', 'game_rooms'],
    migrations: { kind: 'alembic', ini: 'vbrpg/alembic.ini', command: ['/usr/bin/alembic'] }
  }
  raw.backups = { dir: 'backups-vbrpg', keep: 10, keepDays: 7 }
  const file = path.join(sb.dir, 'vbrpg.yml')
  writeFileSync(file, toYaml(raw))
  const config = loadConfig(file)
  const service = createService(config, new MemoryLogger())
  const db = path.join(project, 'data/vbrpg.db')
  const alembic = createAlembic({ projectDir: project, env: { DATABASE_URL: `sqlite:///${db}` } })

  // v2.4.9 live at revision b2, with data: the release record.
  await service.nginx.switchUpstream(config.targets.blue.upstream, 'active=blue (test: v2.4.9 release)')
  writeFileSync(path.join(sb.dir, 'config/.env'), 'IMAGE_TAG=v2.4.9\nLOG_LEVEL=info\n')
  await alembic.upgrade(R2)
  await sqliteExec(
    db,
    `WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 200)
       INSERT INTO players (name) SELECT 'player ' || n FROM g;
     INSERT INTO game_rooms (code, host_player_id) SELECT printf('R%05d', id), id FROM players WHERE id <= 50;`
  )
  const rows = (): Promise<string> =>
    sqliteExec(
      db,
      `SELECT (SELECT count(*) FROM players) || ' ' || (SELECT count(*) FROM game_rooms) || ' ' ||
              (SELECT group_concat(id || code || host_player_id, ',') FROM (SELECT * FROM game_rooms ORDER BY id));`
    )
  const before = await rows()
  const release = await takeSnapshot(service, { safety: false })
  expect(release.manifest.versions.live).toBe('v2.4.9')
  expect(release.manifest.schemaVersion ?? release.manifest.database?.schemaVersion).toBe(R2)

  // The deployment of v2.5.0: migration c3 and the switch to green.
  await alembic.upgrade('head')
  writeFileSync(path.join(sb.dir, 'config/.env'), 'IMAGE_TAG=v2.5.0\nLOG_LEVEL=info\n')
  await service.nginx.switchUpstream(config.targets.green.upstream, 'active=green (test: v2.5.0 deployment)')
  expect(await alembic.current()).toEqual([R3])

  return { sb, service, db, alembic, release, rows, before }
}

test('SQLite + Alembic: Level 2 downgrades to the backup’s revision, `alembic current` equals it, rows intact', async () => {
  const { sb, service, db, alembic, release, rows, before } = await vbrpgDeployed()
  const dry = await level2(service, { dryRun: true })
  expect(dry.error).toBeUndefined()
  const planned = dry.record.steps.find(s => s.name === 'Roll back database migrations')?.detail ?? ''
  expect(planned).toMatch(new RegExp(`alembic downgrade ${R3} → ${R2}`))
  expect(planned).toMatch(/DROP INDEX ix_game_rooms_host_player_id/)
  expect(await alembic.current()).toEqual([R3])

  const { record, error } = await level2(service)
  expect(error).toBeUndefined()
  expect(record.status).toBe('success')
  expect(record.backupId).toBe(release.id)
  console.log(timelineText(record))
  expect(record.steps.find(s => s.name === 'Roll back database migrations')?.detail).toMatch(
    new RegExp(`alembic downgrade ${R2}: \`alembic current\` is ${R2}`)
  )
  expect(await alembic.current()).toEqual([R2])
  expect(
    await sqliteExec(db, "SELECT count(*) FROM pragma_table_info('game_rooms') WHERE name = 'status';")
  ).toBe('0\n')
  expect(await rows()).toBe(before)
  expect(read(sb.dir, 'config/.env')).toContain('IMAGE_TAG=v2.4.9')
  expect(new Set(await whoServes(sb.nginxUrl, 20))).toEqual(new Set(['blue']))
})

test('SQLite + Alembic: rows that break a foreign key after the downgrade fail the run (exit 1), never a success', async () => {
  const { sb, service, db, alembic } = await vbrpgDeployed()
  // v2.5.0 wrote a room whose host does not exist (SQLite does not enforce foreign keys unless asked to).
  await sqliteExec(
    db,
    "INSERT INTO game_rooms (code, host_player_id, status) VALUES ('ORPHAN', 999999, 'open');"
  )
  const { record, error } = await level2(service)
  expect(exitCodeFor(error)).toBe(1)
  expect(record.status).toBe('failed')
  expect(record.reasonCode).toBe('integrity_failed')
  const check = record.steps.find(s => s.name === 'Database integrity check')
  expect(check?.status).toBe('failed')
  expect(check?.detail).toMatch(/foreign_key_check: 1 violations/)
  expect(await alembic.current()).toEqual([R2]) // the downgrade ran; the database it left is not sound
  expect(read(sb.dir, 'rollback_history.log')).toMatch(/LEVEL=2 .*STATUS=failed/)
  expect(isEscalatable(record.reasonCode)).toBe(true) // Level 3 is what helps now
})
