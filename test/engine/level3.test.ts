import {
  closeSync,
  existsSync,
  openSync,
  readFileSync,
  readSync,
  readdirSync,
  writeFileSync,
  writeSync
} from 'node:fs'
import path from 'node:path'
import { parse as parseYaml, stringify as toYaml } from 'yaml'
import { UserError } from '../../src/core/errors'
import { MemoryLogger } from '../../src/core/logger'
import type { RunRecord } from '../../src/core/run-record'
import { loadConfig } from '../../src/drivers/config-file'
import { integrityCheck, pgQuery } from '../../src/drivers/database'
import { tableCounts as sqliteTableCounts } from '../../src/drivers/sqlite'
import { runningPid } from '../../src/drivers/process'
import { rollback } from '../../src/engine/rollback'
import { createService, type Service } from '../../src/engine/service'
import { takeSnapshot } from '../../src/engine/snapshot'
import { runCli, startSandbox, whoServes, type TestSandbox } from '../support/cli'

const confirm = (): Promise<boolean> => Promise.resolve(true)

let sb: TestSandbox | undefined
afterEach(async () => {
  await sb?.down()
  sb = undefined
})

function dbUrl(service: Service): string {
  const db = service.config.database
  if (db?.kind !== 'postgres') throw new Error('expected PostgreSQL')
  return db.url
}

/** md5 of every row of each critical table, in id order: equal only when the contents are equal. */
async function fingerprint(service: Service): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const t of ['users', 'sessions', 'game_state']) {
    const [row] = await pgQuery<{ h: string | null }>(
      dbUrl(service),
      `SELECT md5(string_agg(x::text, '|' ORDER BY x.id)) AS h FROM ${t} x`
    ).catch(() => [{ h: 'missing' }])
    out[t] = row?.h ?? 'empty'
  }
  return out
}

/**
 * The sandbox's green runs a deliberately bad release (30 % errors, 600 ms answers). These tests recover to a
 * backup taken while green served, and Level 3 ends with the runbook's comprehensive validation (smoke tests,
 * error rate, p95, monitoring), which rightly fails on that release: here green stands for a release that served
 * well, so the config starts it healthy when Level 3 brings it back.
 */
function healthyGreen(configFile: string): void {
  const raw = parseYaml(readFileSync(configFile, 'utf8')) as {
    targets: { green: { process: { command: string[] } } }
  }
  const cmd = raw.targets.green.process.command
  const set = (flag: string, value: string): void => {
    const i = cmd.indexOf(flag)
    if (i < 0) throw new Error(`no ${flag} in green's command`)
    cmd[i + 1] = value
  }
  set('--error-rate', '0')
  set('--delay-ms', '5')
  writeFileSync(configFile, toYaml(raw))
}

function stepTimes(record: RunRecord): string {
  return record.steps.map(s => `${s.name} ${((s.durationMs ?? 0) / 1000).toFixed(2)}s`).join(', ')
}

function flipByte(file: string): void {
  const fd = openSync(file, 'r+')
  const size = readFileSync(file).length
  const pos = Math.floor(size / 2)
  const b = Buffer.alloc(1)
  readSync(fd, b, 0, 1, pos)
  b[0] = (b[0] ?? 0) ^ 0xff
  writeSync(fd, b, 0, 1, pos)
  closeSync(fd)
}

test('(a) a dropped table, corrupted rows and junk data → Level 3 → every table and the data dir equal the snapshot', async () => {
  sb = await startSandbox()
  healthyGreen(sb.config)
  const log = new MemoryLogger()
  const service = createService(loadConfig(sb.config), log)
  const world = path.join(sb.dir, 'data/godot/world.json')
  const snap = await takeSnapshot(service, { safety: false })
  const before = await fingerprint(service)
  const worldBefore = readFileSync(world)

  await pgQuery(dbUrl(service), 'DROP TABLE game_state')
  await pgQuery(dbUrl(service), "UPDATE users SET email = 'bad' || id || '@corrupt.test'")
  writeFileSync(world, 'junk')
  writeFileSync(path.join(sb.dir, 'data/godot/corruption_detected'), 'detected\n')
  expect((await fingerprint(service)).game_state).toBe('missing')

  const { record, error } = await rollback(service, {
    level: 3,
    reason: 'data corruption',
    dryRun: false,
    confirm
  })
  console.log(
    `Level 3 (physical, to the backup point): ${(record.durationMs ?? 0) / 1000}s — ${stepTimes(record)}`
  )
  expect(error).toBeUndefined()
  expect(record.status).toBe('success')
  expect(record.backupId).toBe(snap.id)
  expect(record.steps.find(s => s.name === 'Database restoration')!.detail).toMatch(/physical restore/)

  expect(await fingerprint(service)).toEqual(before)
  expect(readFileSync(world).equals(worldBefore)).toBe(true)
  expect(existsSync(path.join(sb.dir, 'data/godot/corruption_detected'))).toBe(false)
  expect(new Set(await whoServes(sb.nginxUrl, 10))).toEqual(new Set(['green']))

  expect(record.dataLoss).toBeDefined()
  expect(record.dataLoss!.walReplayed).toBe(false)
  expect(record.dataLoss!.windowSeconds).toBeGreaterThanOrEqual(0)
  const history = readFileSync(path.join(sb.dir, 'rollback_history.log'), 'utf8').trim().split('\n')
  expect(history[history.length - 1]).toMatch(
    /LEVEL=3 FROM=v2\.5\.0 TO=v2\.5\.0 .*STATUS=success .*data-loss window \d+s/
  )
  // the emergency snapshot holds the bad state, database included
  const safety = service.store.get(record.safetyBackupId!)
  expect(safety.manifest.database?.file).toBe('database/dump.tar.zst')
  expect(safety.manifest.database?.rowCounts?.['public.game_state']).toBeUndefined()
  expect(existsSync(path.join(sb.dir, 'state/level3-journal.json'))).toBe(false)
})

test('(b) with WAL archiving: recovery to T keeps every commit before T and none after', async () => {
  sb = await startSandbox(['--wal-archive'])
  healthyGreen(sb.config)
  const service = createService(loadConfig(sb.config), new MemoryLogger())
  await takeSnapshot(service, { safety: false })
  const url = dbUrl(service)
  for (let i = 0; i < 5; i++)
    await pgQuery(url, `INSERT INTO users (name, email) VALUES ('before ${i}', 'before${i}@t.test')`)
  // T from the server's clock (the one commits are stamped with), after the last 'before' commit: no sleeps.
  const [now] = await pgQuery<{ t: Date }>(url, 'SELECT clock_timestamp() AS t')
  const T = now!.t
  for (let i = 0; i < 5; i++)
    await pgQuery(url, `INSERT INTO users (name, email) VALUES ('after ${i}', 'after${i}@t.test')`)
  await pgQuery(url, 'DELETE FROM game_state WHERE id > 10') // the bad change, after T

  const { record, error } = await rollback(service, {
    level: 3,
    toTime: T.toISOString(),
    reason: 'bad delete',
    dryRun: false,
    confirm
  })
  console.log(`Level 3 with WAL replay to T: ${(record.durationMs ?? 0) / 1000}s — ${stepTimes(record)}`)
  expect(error).toBeUndefined()
  const names = (
    await pgQuery<{ name: string }>(
      url,
      "SELECT name FROM users WHERE name LIKE 'before%' OR name LIKE 'after%' ORDER BY id"
    )
  ).map(r => r.name)
  expect(names).toEqual(['before 0', 'before 1', 'before 2', 'before 3', 'before 4'])
  expect(Number((await pgQuery<{ n: string }>(url, 'SELECT count(*) AS n FROM game_state'))[0]!.n)).toBe(2000)
  expect(record.dataLoss).toMatchObject({ restoredTo: T.toISOString(), walReplayed: true })
  expect(record.steps.find(s => s.name === 'Transaction log replay')!.detail).toMatch(/WAL replayed/)

  // a time the archive cannot reach is refused before anything stops
  const refused = await rollback(service, {
    level: 3,
    toTime: new Date(Date.now() - 86_400_000).toISOString(),
    reason: 'x',
    dryRun: false,
    confirm
  })
  expect(refused.error).toBeInstanceOf(UserError)
  expect(refused.record.steps.find(s => s.status === 'failed')!.name).toBe('Pre-flight checks')
})

test('(c) one flipped byte in any backup file: Level 3 refuses (exit 2) before anything stops; killed midway, it converges', async () => {
  sb = await startSandbox()
  healthyGreen(sb.config)
  const service = createService(loadConfig(sb.config), new MemoryLogger())
  const snap = await takeSnapshot(service, { safety: false })
  const good = await fingerprint(service)
  await pgQuery(dbUrl(service), "UPDATE users SET email = 'bad' || id || '@corrupt.test' WHERE id < 100")
  const damaged = await fingerprint(service)
  const upstream = readFileSync(path.join(sb.dir, 'nginx/upstream.conf'), 'utf8')
  const files = snap.manifest.files.map(f => f.path)
  expect(files).toEqual(
    expect.arrayContaining(['database/dump.tar.zst', 'database/base.tar.zst', 'data/godot-data.tar.zst'])
  )
  for (const rel of files) {
    const file = path.join(snap.dir, rel)
    flipByte(file)
    const { record, error } = await rollback(service, { level: 3, reason: 'flip', dryRun: false, confirm })
    expect(error).toBeInstanceOf(UserError)
    expect(record.status).toBe('refused')
    expect(record.steps.find(s => s.status === 'failed')!.name).toBe('Pre-flight checks')
    expect(record.error).toContain(rel)
    flipByte(file) // back as it was
  }
  expect(runningPid(path.join(sb.dir, 'run/blue.pid'))).toBeDefined()
  expect(runningPid(path.join(sb.dir, 'run/green.pid'))).toBeDefined()
  expect(readFileSync(path.join(sb.dir, 'nginx/upstream.conf'), 'utf8')).toBe(upstream)
  expect(await fingerprint(service)).toEqual(damaged)
  expect(service.store.list().filter(b => b.manifest.kind === 'safety')).toEqual([])
  flipByte(path.join(snap.dir, 'database/dump.tar.zst'))
  const viaCli = await runCli(['--config', sb.config, 'rollback', '--level', '3', '--auto-confirm'])
  expect(viaCli.code).toBe(2)
  flipByte(path.join(snap.dir, 'database/dump.tar.zst'))

  // Killed right after the database restoration, then run again: it converges, with one emergency snapshot.
  const crashed = await runCli(['--config', sb.config, 'rollback', '--level', '3', '--auto-confirm'], {
    env: { BACKOUT_TEST_CRASH_AFTER_STEP: '6' }
  })
  expect(crashed.code).not.toBe(0)
  expect(existsSync(path.join(sb.dir, 'state/level3-journal.json'))).toBe(true)
  const again = await rollback(service, { level: 3, reason: 'again', dryRun: false, confirm })
  expect(again.error).toBeUndefined()
  expect(again.record.steps.find(s => s.name === 'Emergency snapshot')!.detail).toMatch(/interrupted run/)
  const safeties = service.store.list().filter(b => b.manifest.kind === 'safety')
  expect(safeties.map(b => b.id)).toEqual([again.record.safetyBackupId])
  expect(await service.store.verify(safeties[0]!.id)).toEqual([])
  expect(await fingerprint(service)).toEqual(good)
  expect(new Set(await whoServes(sb.nginxUrl, 5))).toEqual(new Set(['green']))
  expect(readdirSync(path.join(sb.dir, 'pg')).filter(n => /restore\.json|restoring/.test(n))).toEqual([])
})

test('(d) SQLite: a corrupted file → Level 3 → integrity ok and counts equal; a flipped byte in the backup is refused', async () => {
  sb = await startSandbox(['--db', 'sqlite'])
  healthyGreen(sb.config)
  const service = createService(loadConfig(sb.config), new MemoryLogger())
  const dbPath = path.join(sb.dir, 'data/app.db')
  const snap = await takeSnapshot(service, { safety: false })
  expect(snap.manifest.database).toMatchObject({ kind: 'sqlite', file: 'database/app.db' })
  const recorded = snap.manifest.database!.rowCounts!

  // one flipped byte in the backup's database: refused before anything stops
  flipByte(path.join(snap.dir, 'database/app.db'))
  const refused = await rollback(service, { level: 3, reason: 'flip', dryRun: false, confirm })
  expect(refused.error).toBeInstanceOf(UserError)
  expect(refused.record.error).toContain('database/app.db')
  expect(runningPid(path.join(sb.dir, 'run/green.pid'))).toBeDefined()
  flipByte(path.join(snap.dir, 'database/app.db'))

  // garbage over pages of the live file: integrity_check fails
  const fd = openSync(dbPath, 'r+')
  writeSync(fd, Buffer.alloc(8192, 0x5a), 0, 8192, 4096)
  closeSync(fd)
  expect((await integrityCheck(service.config.database!)).ok).toBe(false)

  // The emergency snapshot cannot capture a file that fails integrity_check: refused before anything stops,
  // unless the operator says so (the corrupt file is kept aside by the restore, as app_corrupted_<time>.db).
  const uncaptured = await rollback(service, {
    level: 3,
    reason: 'sqlite corruption',
    dryRun: false,
    confirm
  })
  expect(uncaptured.record.reasonCode).toBe('database_not_captured')
  expect(uncaptured.record.status).toBe('refused')
  expect(runningPid(path.join(sb.dir, 'run/green.pid'))).toBeDefined()
  const { record, error } = await rollback(service, {
    level: 3,
    reason: 'sqlite corruption',
    dryRun: false,
    confirm,
    allowUncapturedDatabase: true
  })
  console.log(`Level 3 (SQLite): ${(record.durationMs ?? 0) / 1000}s — ${stepTimes(record)}`)
  expect(error).toBeUndefined()
  expect((await integrityCheck(service.config.database!)).ok).toBe(true)
  expect(await sqliteTableCounts(dbPath)).toEqual(recorded)
  expect(
    readdirSync(path.join(sb.dir, 'data')).filter(n => /^app_corrupted_\d{8}_\d{6}\.db$/.test(n))
  ).toHaveLength(1)
  expect(record.dataLoss?.walReplayed).toBe(false)
  expect(new Set(await whoServes(sb.nginxUrl, 5))).toEqual(new Set(['green']))
})

test('(e) no local cluster (database.dataDir unset): the logical path, the dump unpacked during the pre-flight and reused by the restore', async () => {
  sb = await startSandbox()
  healthyGreen(sb.config)
  const config = readFileSync(sb.config, 'utf8')
  expect(config).toMatch(/^ {2}dataDir: pg\/data$/m)
  writeFileSync(sb.config, config.replace(/^ {2}dataDir: pg\/data\n/m, ''))
  const service = createService(loadConfig(sb.config), new MemoryLogger())
  const snap = await takeSnapshot(service, { safety: false })
  expect(snap.manifest.database?.base).toBeUndefined()
  const before = await fingerprint(service)
  await pgQuery(dbUrl(service), "UPDATE users SET email = 'bad' || id || '@corrupt.test'")
  const prepared = (): string[] =>
    readdirSync(path.join(sb!.dir, 'state')).filter(n => n.startsWith('prepared-dump-'))

  const dry = await rollback(service, { level: 3, reason: 'plan', dryRun: true, confirm })
  expect(dry.error).toBeUndefined()
  expect(dry.record.steps.find(s => s.name === 'Pre-flight checks')!.detail).toMatch(/logical restore/)
  expect(prepared()).toEqual([]) // a dry run leaves nothing behind
  // Not confirmed: refused after the pre-flight unpacked the dump and the data archive; none of it is left.
  const declined = await rollback(service, {
    level: 3,
    reason: 'declined',
    dryRun: false,
    confirm: () => Promise.resolve(false)
  })
  expect(declined.record.status).toBe('refused')
  expect(declined.record.reasonCode).toBe('not_confirmed')
  expect(prepared()).toEqual([])
  expect(readdirSync(path.join(sb.dir, 'data')).filter(n => n.includes('.backout-'))).toEqual([])

  const { record, error } = await rollback(service, {
    level: 3,
    reason: 'corruption',
    dryRun: false,
    confirm
  })
  console.log(`Level 3 (logical): ${(record.durationMs ?? 0) / 1000}s — ${stepTimes(record)}`)
  expect(error).toBeUndefined()
  expect(record.steps.find(s => s.name === 'Database restoration')!.detail).toMatch(
    /logical restore of \d{8}-\d{6} .* from the dump unpacked during the pre-flight/
  )
  expect(await fingerprint(service)).toEqual(before)
  expect(prepared()).toEqual([]) // used by the restore, then removed
})
