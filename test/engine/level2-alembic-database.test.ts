import { createHash } from 'node:crypto'
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { parse as parseYaml, stringify as toYaml } from 'yaml'
import { exitCodeFor } from '../../src/core/errors'
import { MemoryLogger } from '../../src/core/logger'
import { loadConfig } from '../../src/drivers/config-file'
import { sqliteExec } from '../../src/drivers/sqlite-cli'
import { rollback } from '../../src/engine/rollback'
import { createService } from '../../src/engine/service'
import { takeSnapshot } from '../../src/engine/snapshot'
import { addUsersRevisions, alembic, alembicInit, ALEMBIC } from '../support/alembic-project'
import { startSandbox, whoServes, type TestSandbox } from '../support/cli'

/**
 * Issue #20.4: the database alembic uses is the configured one. A project made by `alembic init` has an env.py that
 * reads sqlalchemy.url from alembic.ini and ignores DATABASE_URL; when that URL names another database than
 * backout.yml's, Level 2 would back up the configured database and downgrade the other one. It must refuse in
 * preparation — exit 2, bad_config, nothing stopped, neither database touched.
 */
jest.setTimeout(120_000)

let sb: TestSandbox | undefined
afterAll(async () => {
  await sb?.down()
})

const sha = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex')

test('Level 2 refuses when alembic.ini names another database than backout.yml, and plans when it names the same', async () => {
  sb = await startSandbox()
  const project = path.join(sb.dir, 'backend')
  mkdirSync(project)
  // As users write it: relative to the directory alembic runs in.
  await alembicInit(project, 'sqlite:///app.db')
  const [first, second] = await addUsersRevisions(project)
  const raw = parseYaml(readFileSync(sb.config, 'utf8')) as Record<string, unknown>
  raw.database = {
    kind: 'sqlite',
    path: 'backend/app.db',
    migrations: { kind: 'alembic', ini: 'backend/alembic.ini', command: [ALEMBIC] }
  }
  raw.backups = { dir: 'backups-alembic', keep: 10, keepDays: 7 }
  const file = path.join(sb.dir, 'alembic.yml')
  writeFileSync(file, toYaml(raw))
  const config = loadConfig(file)
  const service = createService(config, new MemoryLogger())
  const live = path.join(project, 'app.db')

  // The release at the first revision with data, then the deployment: the second revision and green.
  await service.nginx.switchUpstream(config.targets.blue.upstream, 'active=blue (test: release)')
  await alembic(project, 'upgrade', first)
  await sqliteExec(live, "INSERT INTO users (name) VALUES ('ada'), ('grace');")
  const release = await takeSnapshot(service, { safety: false })
  expect(release.manifest.schemaVersion).toBe(first)
  await alembic(project, 'upgrade', 'head')
  await service.nginx.switchUpstream(config.targets.green.upstream, 'active=green (test: deployment)')

  const level2 = (dryRun: boolean) =>
    rollback(service, { level: 2, reason: 'test', dryRun, confirm: () => Promise.resolve(true) })

  // alembic.ini names the configured file: the stock env.py passes the check and the downgrade is planned.
  const planned = await level2(true)
  expect(planned.error).toBeUndefined()
  expect(planned.record.steps.find(s => s.name === 'Roll back database migrations')?.detail).toContain(
    `alembic downgrade ${second} → ${first}`
  )

  // A developer's database in alembic.ini (committed by mistake), migrated to head like the live one.
  const ini = path.join(project, 'alembic.ini')
  writeFileSync(
    ini,
    readFileSync(ini, 'utf8').replace(
      'sqlalchemy.url = sqlite:///app.db',
      'sqlalchemy.url = sqlite:///dev.db'
    )
  )
  await alembic(project, 'upgrade', 'head')
  const dev = path.join(project, 'dev.db')
  const before = { live: sha(live), dev: sha(dev), backups: readdirSync(config.backups.dir).sort() }

  const { record, error } = await level2(false)
  expect(exitCodeFor(error)).toBe(2)
  expect(record.status).toBe('refused')
  expect(record.reasonCode).toBe('bad_config')
  expect(record.steps.filter(s => s.status === 'ok' || s.status === 'failed')).toEqual([
    expect.objectContaining({ name: 'Preparation', status: 'failed' })
  ])
  const message = String((error as Error).message)
  expect(message).toContain(`alembic would migrate SQLite ${dev}`)
  expect(message).toContain(`(database.path) is SQLite ${live}`)
  expect(message).toContain('set sqlalchemy.url in')
  // Nothing changed: both databases byte for byte, no safety backup, green still serves.
  expect(sha(live)).toBe(before.live)
  expect(sha(dev)).toBe(before.dev)
  expect(await alembic(project, 'current')).toContain(second)
  expect(readdirSync(config.backups.dir).sort()).toEqual(before.backups)
  expect(new Set(await whoServes(sb.nginxUrl, 5))).toEqual(new Set(['green']))
})
