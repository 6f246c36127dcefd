import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { UserError } from '../../src/core/errors'
import { alembicPython, createAlembic } from '../../src/drivers/alembic'
import {
  databaseOfUrl,
  forcedIni,
  requireConfiguredDatabase,
  sameDatabase
} from '../../src/drivers/alembic-database'
import { addUsersRevisions, alembic, alembicInit } from '../support/alembic-project'

/**
 * Which database alembic really uses, asked of the project's own env.py (nothing connects), and the copy of
 * alembic.ini that points alembic at another database — on projects made by `alembic init` and on the fixture whose
 * env.py reads DATABASE_URL.
 */
jest.setTimeout(60_000)

let dir: string
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'backout-alembic-db-'))
})
afterEach(() => rmSync(dir, { recursive: true, force: true }))

const FIXTURE = path.join(__dirname, '..', 'fixtures', 'alembic-app')
const python = alembicPython()

test('a stock env.py uses alembic.ini’s URL and ignores DATABASE_URL; nothing is created or connected', async () => {
  await alembicInit(dir, 'sqlite:///data/app.db')
  const driver = createAlembic({ projectDir: dir, env: { DATABASE_URL: 'sqlite:////elsewhere.db' } })
  expect(await driver.database()).toMatchObject({ backend: 'sqlite', path: path.join(dir, 'data/app.db') })
  // Nothing connected: the relative file (and its folder) were not created.
  expect(() => readFileSync(path.join(dir, 'data/app.db'))).toThrow()
  await expect(
    requireConfiguredDatabase(driver, {
      url: `sqlite:///${path.join(dir, 'data/app.db')}`,
      ini: 'alembic.ini',
      key: 'database.path'
    })
  ).resolves.toContain('the configured database')
  const refused = requireConfiguredDatabase(driver, {
    url: 'sqlite:////elsewhere.db',
    ini: 'alembic.ini',
    key: 'database.path'
  })
  await expect(refused).rejects.toThrow(UserError)
  await expect(refused).rejects.toMatchObject({ reasonCode: 'bad_config' })
  await expect(refused).rejects.toThrow(`alembic would migrate SQLite ${path.join(dir, 'data/app.db')}`)
})

test('PostgreSQL with a password: same server and database pass, another database is refused, no password shown', async () => {
  await alembicInit(dir, 'postgresql://app:s3cret@127.0.0.1:5999/app')
  const driver = createAlembic({ projectDir: dir })
  expect(await driver.database()).toEqual({
    backend: 'postgresql',
    host: '127.0.0.1',
    port: 5999,
    database: 'app',
    username: 'app',
    path: null
  })
  await expect(
    requireConfiguredDatabase(driver, {
      url: 'postgres://app:other@localhost:5999/app',
      ini: 'alembic.ini',
      key: 'database.url'
    })
  ).resolves.toContain('postgresql://app@127.0.0.1:5999/app')
  const refused = requireConfiguredDatabase(driver, {
    url: 'postgresql://app:s3cret@127.0.0.1:5999/other_app',
    ini: 'alembic.ini',
    key: 'database.url'
  })
  await expect(refused).rejects.toThrow(/is postgresql:\/\/app@127\.0\.0\.1:5999\/other_app/)
  await expect(refused).rejects.not.toThrow(/s3cret/)
})

test('an env.py that reads DATABASE_URL uses it', async () => {
  const driver = createAlembic({ projectDir: FIXTURE, env: { DATABASE_URL: `sqlite:///${dir}/x.db` } })
  expect(await driver.database()).toMatchObject({ backend: 'sqlite', path: path.join(dir, 'x.db') })
})

test('the forced alembic.ini: the scratch URL wins, %(here)s and a relative script_location still mean the project', async () => {
  const project = path.join(dir, 'backend')
  mkdirSync(project)
  await alembicInit(project, 'sqlite:///%(here)s/live.db')
  const [, second] = await addUsersRevisions(project)
  // A '%' in the URL must survive alembic's %-interpolation of the ini.
  const scratch = path.join(dir, 'scratch 100%.db')
  const url = `sqlite:///${scratch}`
  const forced = await forcedIni({ projectDir: project, ini: 'alembic.ini', python }, url)
  try {
    expect(path.dirname(forced.file)).not.toBe(project)
    expect(readFileSync(forced.file, 'utf8')).not.toContain('live.db')
    const driver = createAlembic({ projectDir: project, config: forced.file })
    expect(await driver.database()).toMatchObject({ path: scratch })
    expect(sameDatabase((await driver.database())!, databaseOfUrl(url, project))).toBe(true)
    expect(await driver.upgrade('head')).toEqual([second])
  } finally {
    await forced.remove()
  }
  expect(() => readFileSync(forced.file)).toThrow()
  expect(() => readFileSync(path.join(project, 'live.db'))).toThrow()
  expect(await alembic(project, 'heads')).toContain(second)
})
