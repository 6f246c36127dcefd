import { mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync, chmodSync } from 'node:fs'
import path from 'node:path'
import { Client } from 'pg'
import { exitCodeFor, reasonCodeFor } from '../../src/core/errors'
import { MemoryLogger } from '../../src/core/logger'
import { loadConfig } from '../../src/drivers/config-file'
import { pgQuery } from '../../src/drivers/database'
import { findPgBinDir } from '../../src/drivers/postgres-cluster'
import { readPid, isAlive } from '../../src/drivers/process'
import { MIGRATION_LOCK_NAME, advisoryLockKey } from '../../src/drivers/sql-migrations'
import { rollbackWithEscalation } from '../../src/engine/escalate'
import { createService } from '../../src/engine/service'
import { runCli, startSandbox, whoServes, type TestSandbox } from '../support/cli'

/**
 * Refusals that keep their promise on a real sandbox (nginx, PostgreSQL, blue and green as processes):
 * a running migration is found before anything stops (#12.7); Level 3 never replaces a database it did not
 * capture, and a wrong database.url stops nothing (#18.1); Level 3 leaves the standby as the backup recorded it and
 * a second Level 1 does not switch back to the release just rolled away from (#12.9).
 */
jest.setTimeout(180_000)

let sb: TestSandbox | undefined
afterEach(async () => {
  await sb?.down()
  sb = undefined
})

const pids = (dir: string): Record<string, boolean> =>
  Object.fromEntries(
    (['blue', 'green'] as const).map(c => {
      const pid = readPid(path.join(dir, `run/${c}.pid`))
      return [c, pid !== undefined && isAlive(pid)]
    })
  )

const replacedDirs = (dir: string): string[] =>
  readdirSync(path.join(dir, 'pg')).filter(n => n.includes('replaced') || n.includes('.backout-'))

const history = (dir: string): string => {
  try {
    return readFileSync(path.join(dir, 'rollback_history.log'), 'utf8')
  } catch {
    return ''
  }
}

test('Level 2 while a migration holds the advisory lock: refused in Preparation (exit 2), nothing stopped, no escalation', async () => {
  sb = await startSandbox()
  const config = loadConfig(sb.config)
  if (config.database?.kind !== 'postgres') throw new Error('expected PostgreSQL')
  const migration = new Client({ connectionString: config.database.url })
  await migration.connect()
  try {
    await migration.query('SELECT pg_advisory_lock($1::bigint)', [
      advisoryLockKey(MIGRATION_LOCK_NAME).toString()
    ])
    const service = createService(config, new MemoryLogger())
    const { results } = await rollbackWithEscalation(service, {
      level: 2,
      reason: 'migration 105 broke the lobby',
      dryRun: false,
      confirm: () => Promise.resolve(true)
    })
    expect(results).toHaveLength(1) // not escalated to Level 3
    const [only] = results
    expect(reasonCodeFor(only!.error)).toBe('migration_running')
    expect(exitCodeFor(only!.error)).toBe(2)
    expect(only!.record.status).toBe('refused')
    expect(only!.record.steps.map(s => [s.name, s.status]).slice(0, 3)).toEqual([
      ['Preparation', 'failed'],
      ['Safety backup', 'skipped'],
      ['Stop current deployment', 'skipped']
    ])
    // the live target still runs and serves
    expect(pids(sb.dir)).toEqual({ blue: true, green: true })
    expect(new Set(await whoServes(sb.nginxUrl, 5))).toEqual(new Set(['green']))
  } finally {
    await migration.end()
  }
})

test('Level 3 with a wrong port in database.url while the cluster is healthy: refused in pre-flight (exit 2), nothing stopped', async () => {
  sb = await startSandbox()
  const text = readFileSync(sb.config, 'utf8')
  const port = /url: postgresql:\/\/[^@]+@127\.0\.0\.1:(\d+)\//.exec(text)?.[1]
  if (!port) throw new Error('no database.url port in the sandbox config')
  writeFileSync(sb.config, text.replace(`127.0.0.1:${port}/`, `127.0.0.1:${Number(port) + 7}/`))
  const backups = readdirSync(path.join(sb.dir, 'backups')).sort()
  const res = await runCli([
    '--config',
    sb.config,
    'rollback',
    '--level',
    '3',
    '--auto-confirm',
    '--reason',
    'x'
  ])
  expect(res.code).toBe(2)
  expect(res.stderr + res.stdout).toMatch(/the database does not answer at database\.url/)
  expect(res.stderr + res.stdout).toContain(`is running on port ${port}: is the URL's port right?`)
  expect(res.stderr + res.stdout).toContain('--allow-uncaptured-database')
  expect(pids(sb.dir)).toEqual({ blue: true, green: true })
  expect(new Set(await whoServes(sb.nginxUrl, 5))).toEqual(new Set(['green']))
  expect(replacedDirs(sb.dir)).toEqual([])
  expect(readdirSync(path.join(sb.dir, 'backups')).sort()).toEqual(backups) // no emergency snapshot either
  // the cluster was never touched: it answers on its real port
  const url = loadConfig(sb.config).database
  if (url?.kind !== 'postgres') throw new Error('expected PostgreSQL')
  expect(await pgQuery(url.url.replace(`:${Number(port) + 7}/`, `:${port}/`), 'SELECT 1 AS one')).toEqual([
    { one: 1 }
  ])
})

test('Level 3 whose emergency snapshot cannot capture the database is refused before anything stops; the logged override goes on and restores the standby', async () => {
  sb = await startSandbox()
  // pg_dump that fails (as on a full disk): the database answers, but the emergency snapshot cannot capture it.
  const real = findPgBinDir()
  if (!real) throw new Error('PostgreSQL binaries not found')
  const bin = path.join(sb.dir, 'pgbin')
  mkdirSync(bin)
  for (const name of readdirSync(real))
    if (name !== 'pg_dump') symlinkSync(path.join(real, name), path.join(bin, name))
  writeFileSync(
    path.join(bin, 'pg_dump'),
    '#!/bin/sh\necho "pg_dump: error: could not write: No space left on device" >&2\nexit 1\n'
  )
  chmodSync(path.join(bin, 'pg_dump'), 0o755)
  const text = readFileSync(sb.config, 'utf8')
  writeFileSync(sb.config, text.replace(/^( {2}dataDir: .*)$/m, `$1\n  binDir: ${bin}`))
  const data = readFileSync(path.join(sb.dir, 'data/godot/world.json'))

  const refused = await runCli([
    '--config',
    sb.config,
    'rollback',
    '--level',
    '3',
    '--auto-confirm',
    '--reason',
    'corrupt'
  ])
  expect(refused.code).toBe(2)
  expect(refused.stderr + refused.stdout).toMatch(/did not capture the database .*nothing was stopped/s)
  expect(pids(sb.dir)).toEqual({ blue: true, green: true })
  expect(new Set(await whoServes(sb.nginxUrl, 5))).toEqual(new Set(['green']))
  expect(replacedDirs(sb.dir)).toEqual([])
  expect(readFileSync(path.join(sb.dir, 'data/godot/world.json')).equals(data)).toBe(true)
  expect(history(sb.dir)).toMatch(
    /LEVEL=3 .*STATUS=refused REASON="corrupt — refused: the emergency snapshot \S+ did not capture/
  )

  // The operator's explicit override: recorded in the history; the restore goes on (to the release snapshot, taken
  // while blue v2.4.9 served and green ran as the standby).
  const forced = await runCli([
    '--config',
    sb.config,
    'rollback',
    '--level',
    '3',
    '--auto-confirm',
    '--allow-uncaptured-database',
    '--reason',
    'corrupt'
  ])
  expect({ code: forced.code, err: forced.code ? forced.stderr + forced.stdout : '' }).toEqual({
    code: 0,
    err: ''
  })
  expect(forced.stdout + forced.stderr).toMatch(/database NOT captured: .*--allow-uncaptured-database/)
  expect(history(sb.dir)).toMatch(
    /LEVEL=3 .*STATUS=success REASON="corrupt \[override: --allow-uncaptured-database\]/
  )
  expect(forced.stdout).toMatch(/✓ Comprehensive validation/)
  // Step 7 starts all services: blue serves, green — the standby the backup recorded running — runs again, so a
  // Level 1 is possible afterwards (its read steps pass in a dry run).
  expect(new Set(await whoServes(sb.nginxUrl, 5))).toEqual(new Set(['blue']))
  expect(pids(sb.dir)).toEqual({ blue: true, green: true })
  const level1 = await runCli(['--config', sb.config, 'rollback', '--level', '1', '--dry-run'])
  expect(level1.code).toBe(0)
  expect(level1.stderr).toMatch(/✓ Verify previous environment: green v2\.5\.0 running/)
})

test('a second Level 1 after a successful one does not switch back to the release just rolled away from (exit 2, naming --target)', async () => {
  sb = await startSandbox()
  const first = await runCli(['--config', sb.config, 'rollback', '--quick', '--reason', 'bad release'])
  expect(first.code).toBe(0)
  expect(new Set(await whoServes(sb.nginxUrl, 5))).toEqual(new Set(['blue']))
  // Someone starts green again (to look at it): the previous target now "looks healthy".
  const service = createService(loadConfig(sb.config), new MemoryLogger())
  await service.runtime.start('green')
  const second = await runCli(['--config', sb.config, 'rollback', '--quick', '--reason', 'again'])
  expect(second.code).toBe(2)
  expect(second.stderr + second.stdout).toMatch(
    /already moved traffic from v2\.5\.0 to v2\.4\.9: Level 1 now would switch back to v2\.5\.0.*--level 2 --target <backup-id>/s
  )
  expect(new Set(await whoServes(sb.nginxUrl, 10))).toEqual(new Set(['blue']))
})
