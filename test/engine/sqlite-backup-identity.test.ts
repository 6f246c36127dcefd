import { createHash } from 'node:crypto'
import { cpSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { parse as parseYaml, stringify as toYaml } from 'yaml'
import { MemoryLogger } from '../../src/core/logger'
import { isBackoutId } from '../../src/core/sqlite-identity'
import { loadConfig } from '../../src/drivers/config-file'
import { readSqliteIdentity } from '../../src/drivers/sqlite'
import { sqliteExec } from '../../src/drivers/sqlite-cli'
import { rollback } from '../../src/engine/rollback'
import { createService, type Service } from '../../src/engine/service'
import { takeSnapshot } from '../../src/engine/snapshot'
import { SCHEMA_SQLITE } from '../../src/sandbox/scenario'
import { runCli, startSandbox, whoServes, type TestSandbox } from '../support/cli'

/**
 * Issue #12.4: a SQLite backup is tied to the database it came from. On the SQLite sandbox (blue v2.4.9 at schema
 * 104 captured by the release snapshot; green v2.5.0 live at 105): a backout snapshot of another application's
 * database, and one of the same application's database on another host (same path, same schema), copied into the
 * backups directory and sealed as an operator accepts a backup, are refused by Level 2 and Level 3 (exit 2,
 * backup_foreign, before anything stops) and never picked automatically; the release — the same file at an older
 * schema — still restores.
 */
jest.setTimeout(120_000)

let sb: TestSandbox | undefined
afterAll(async () => {
  await sb?.down()
})

const sha = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex')

/** The sandbox's config with other keys, written beside it, as a service. */
function variant(name: string, change: (raw: Record<string, unknown>) => void): Service {
  const raw = parseYaml(readFileSync(sb!.config, 'utf8')) as Record<string, unknown>
  change(raw)
  const file = path.join(sb!.dir, `${name}.yml`)
  writeFileSync(file, toYaml(raw))
  return createService(loadConfig(file), new MemoryLogger())
}

/** Copies a backup into the service's backups directory and seals it there (`backout seal`), as an operator does. */
async function copyIn(from: Service, id: string, config: string): Promise<void> {
  cpSync(from.store.pathOf(id), path.join(path.dirname(config), 'backups', id), { recursive: true })
  const sealed = await runCli(['--config', config, 'seal', id])
  expect(sealed.code).toBe(0)
}

test('a backup of another database is refused and never picked; the same file at an older schema restores', async () => {
  sb = await startSandbox(['--db', 'sqlite'])
  const service = createService(loadConfig(sb.config), new MemoryLogger())
  const { config } = service
  const live = path.join(sb.dir, 'data/app.db')
  const release = service.store.list().find(b => b.manifest.kind === 'snapshot')!
  const recorded = release.manifest.database?.identity?.sqlite
  expect(recorded?.path).toBe(live)
  expect(isBackoutId(recorded?.applicationId ?? 0)).toBe(true)
  expect(recorded?.tables).toEqual(['game_state', 'schema_migrations', 'sessions', 'users'])

  // The snapshots below are taken while blue serves, so that they are candidates for the automatic choice.
  await service.nginx.switchUpstream(config.targets.blue.upstream, 'active=blue (test: other snapshots)')

  // Another application's database on this host, snapshotted by its own backout.yml.
  const blog = path.join(sb.dir, 'blog/blog.db')
  mkdirSync(path.dirname(blog))
  await sqliteExec(
    blog,
    'CREATE TABLE posts (id INTEGER PRIMARY KEY, title TEXT NOT NULL); CREATE TABLE comments (id INTEGER PRIMARY KEY, post_id INTEGER REFERENCES posts(id), body TEXT);' +
      "INSERT INTO posts (title) VALUES ('hello');"
  )
  const blogService = variant('blog', raw => {
    raw.database = { kind: 'sqlite', path: 'blog/blog.db' }
    raw.backups = { dir: 'blog/backups' }
    raw.state = { dir: 'blog/state' }
  })
  // Its safety backup leaves the file as it is (application_id 0); its first full snapshot marks it.
  const foreignUnmarked = await takeSnapshot(blogService, { safety: true })
  expect(foreignUnmarked.manifest.database?.identity?.sqlite?.applicationId).toBe(0)
  await new Promise(r => setTimeout(r, 1100)) // backup ids have one-second resolution
  const foreignApp = await takeSnapshot(blogService, { safety: false })

  // The same application on another host: same path, same schema, its own database (and its own backout).
  renameSync(live, `${live}.ours`)
  await sqliteExec(live, SCHEMA_SQLITE)
  const otherHost = variant('other-host', raw => {
    raw.backups = { dir: 'other-host/backups' }
    raw.state = { dir: 'other-host/state' }
  })
  await new Promise(r => setTimeout(r, 1100)) // backup ids have one-second resolution
  const foreignHost = await takeSnapshot(otherHost, { safety: false })
  renameSync(`${live}.ours`, live)
  await service.nginx.switchUpstream(config.targets.green.upstream, 'active=green (test: back to v2.5.0)')
  expect(foreignHost.manifest.database?.identity?.sqlite?.path).toBe(live)
  expect(foreignHost.manifest.database?.identity?.sqlite?.tables).toEqual(recorded?.tables)

  await copyIn(blogService, foreignUnmarked.id, sb.config)
  await copyIn(blogService, foreignApp.id, sb.config)
  await copyIn(otherHost, foreignHost.id, sb.config)
  const before = {
    live: sha(live),
    upstream: readFileSync(config.nginx.upstreamFile, 'utf8'),
    backups: service.store.list().map(b => b.id)
  }
  expect([...before.backups].sort()).toEqual(
    [release.id, foreignUnmarked.id, foreignApp.id, foreignHost.id].sort()
  )

  // Level 2 and Level 3 with --target: refused before anything stops (exit 2), nothing changed.
  const otherId =
    /it holds database 0x42[0-9a-f]{6} \(captured from (\S+)\), and the configured database (\S+) is 0x42/
  for (const [level, id, why] of [
    [
      '2',
      foreignUnmarked.id,
      /it shares no table with the configured database .*: it holds comments, posts, the database holds game_state, sessions, users/
    ],
    ['2', foreignApp.id, otherId],
    ['2', foreignHost.id, otherId],
    ['3', foreignUnmarked.id, /is not a backup of this service's database/],
    ['3', foreignApp.id, /is not a backup of this service's database/],
    ['3', foreignHost.id, /is not a backup of this service's database/]
  ] as const) {
    const res = await runCli([
      '--config',
      sb.config,
      '--json',
      'rollback',
      '--level',
      level,
      '--auto-confirm',
      '--target',
      id
    ])
    expect({ level, id, code: res.code }).toEqual({ level, id, code: 2 })
    expect(res.stderr).toMatch(why)
    expect(JSON.parse(res.stdout)).toMatchObject({ status: 'refused', reasonCode: 'backup_foreign' })
    expect(sha(live)).toBe(before.live)
    expect(readFileSync(config.nginx.upstreamFile, 'utf8')).toBe(before.upstream)
  }
  expect(service.store.list().map(b => b.id)).toEqual(before.backups)
  expect(new Set(await whoServes(sb.nginxUrl, 5))).toEqual(new Set(['green']))

  // The automatic choice skips both (they are newer than the release) and takes the release.
  const level = (n: 2 | 3, dryRun: boolean) =>
    rollback(service, { level: n, reason: 'test', dryRun, confirm: () => Promise.resolve(true) })
  for (const n of [2, 3] as const) {
    const dry = await level(n, true)
    expect(dry.error).toBeUndefined()
    expect(dry.record.backupId).toBe(release.id)
  }

  // The release is the same file at an older schema (105 added users.preferences since): it restores.
  const now = service.store.get(release.id).manifest.database?.identity?.sqlite
  expect(now?.schemaSha256).not.toBe((await readSqliteIdentity(live)).schemaSha256)
  const { record, error } = await level(2, false)
  expect(error).toBeUndefined()
  expect(record.status).toBe('success')
  expect(record.backupId).toBe(release.id)
  expect(
    await sqliteExec(live, "SELECT count(*) FROM pragma_table_info('users') WHERE name = 'preferences';")
  ).toBe('0\n')
  expect(await sqliteExec(live, 'SELECT count(*) FROM users;')).toBe('1000\n')
})
