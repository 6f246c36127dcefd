import { copyFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { OperationError, UserError } from '../../src/core/errors'
import {
  createAlembic,
  detectVersionMismatch,
  parseHistory,
  parseRevisionLines
} from '../../src/drivers/alembic'
import { sqliteExec } from '../../src/drivers/sqlite-cli'

/** Real alembic (/usr/bin/alembic, Debian's) on real SQLite files, against the fixture projects. */
const FIXTURES = path.join(__dirname, '..', 'fixtures')
const APP = path.join(FIXTURES, 'alembic-app')
const BAD = path.join(FIXTURES, 'alembic-app-bad')
const BRANCHED = path.join(FIXTURES, 'alembic-app-branched')
const [R1, R2, R3] = ['a1f0c0de0001', 'b2f0c0de0002', 'c3f0c0de0003']

let dir: string
let db: string
const alembicFor = (projectDir: string, file = db) =>
  createAlembic({ projectDir, env: { DATABASE_URL: `sqlite:///${file}` } })

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'backout-alembic-'))
  db = path.join(dir, 'vbrpg.db')
})
afterEach(() => rmSync(dir, { recursive: true, force: true }))

test('parses current/heads and history output', () => {
  expect(parseRevisionLines(`${R3} (head)\n`)).toEqual([R3])
  expect(parseRevisionLines(`${R3} (head) (mergepoint)\nabc123 (branchpoint)\n`)).toEqual([R3, 'abc123'])
  expect(parseRevisionLines('')).toEqual([])
  expect(
    parseHistory(
      [
        `${R2} -> ${R3} (head), add game_rooms.status, and an index`,
        `a, b -> m1 (head) (mergepoint), merge heads`,
        `<base> -> ${R1}, create players`
      ].join('\n')
    )
  ).toEqual([
    { id: R3, downRevisions: [R2], tags: ['head'], message: 'add game_rooms.status, and an index' },
    { id: 'm1', downRevisions: ['a', 'b'], tags: ['head', 'mergepoint'], message: 'merge heads' },
    { id: R1, downRevisions: [], tags: [], message: 'create players' }
  ])
})

test('upgrade head, current, downgrade -1, to a revision, to base — current checked each time', async () => {
  const alembic = alembicFor(APP)
  expect(await alembic.current()).toEqual([])
  expect(await alembic.preflight()).toEqual({ heads: [R3], current: [] })
  expect(await alembic.upgrade('head')).toEqual([R3])
  expect(await alembic.current()).toEqual([R3])
  expect((await alembic.history()).map(r => r.id)).toEqual([R3, R2, R1])

  expect(await alembic.downgrade('-1')).toEqual([R2])
  expect(await alembic.current()).toEqual([R2])
  expect(
    await sqliteExec(db, "SELECT count(*) FROM pragma_table_info('game_rooms') WHERE name = 'status';")
  ).toBe('0\n')

  await alembic.upgrade('head')
  expect(await alembic.downgrade(R1.slice(0, 6))).toEqual([R1]) // a unique prefix, as alembic accepts
  expect(await sqliteExec(db, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name;")).toBe(
    'alembic_version\nplayers\n'
  )
  expect(await alembic.upgrade('+1')).toEqual([R2])
  expect(await alembic.downgrade('base')).toEqual([])
  expect(await alembic.current()).toEqual([])
})

test('refuses downgrades that are not downgrades, before running anything', async () => {
  const alembic = alembicFor(APP)
  await expect(alembic.downgrade('-1')).rejects.toThrow(/already at base/)
  await alembic.upgrade(R2)
  await expect(alembic.downgrade(R3)).rejects.toThrow(/not at or below the database's current b2f0c0de0002/)
  await expect(alembic.downgrade('-3')).rejects.toThrow(/cannot go 3 revisions below/)
  await expect(alembic.downgrade('nope')).rejects.toThrow(/not in .* migrations/)
  await expect(alembic.downgrade('-1; rm -rf /')).rejects.toThrow(UserError)
  expect(await alembic.current()).toEqual([R2])
})

test('--dry-run SQL: downgrade --sql renders the DROPs and changes nothing', async () => {
  const alembic = alembicFor(APP)
  await alembic.upgrade('head')
  const before = await sqliteExec(db, '.schema')
  const sql = await alembic.downgradeSql(R3, '-1')
  expect(sql).toContain('DROP INDEX ix_game_rooms_host_player_id')
  expect(sql).toContain('DROP TABLE game_rooms')
  expect(sql).toContain(`UPDATE alembic_version SET version_num='${R2}'`)
  expect(await alembic.downgradeSql(R3, 'base')).toContain('DROP TABLE players')
  expect(await alembic.current()).toEqual([R3])
  expect(await sqliteExec(db, '.schema')).toBe(before)
})

test('a downgrade that fails is reported with the revision the database is left at', async () => {
  const alembic = alembicFor(APP)
  await alembic.upgrade('head')
  // Break the downgrade: the index it drops is already gone.
  await sqliteExec(db, 'DROP INDEX ix_game_rooms_host_player_id;')
  const error = await alembic.downgrade('-1').catch((e: unknown) => e)
  expect(error).toBeInstanceOf(OperationError)
  expect((error as Error).message).toMatch(
    /downgrade b2f0c0de0002 failed .* now at c3f0c0de0003: .*no such index/
  )
})

test('pre-flight refuses a project with several heads', async () => {
  const alembic = alembicFor(BRANCHED)
  const error = await alembic.preflight().catch((e: unknown) => e)
  expect(error).toBeInstanceOf(UserError)
  expect((error as Error).message).toMatch(
    /2 heads \(.*c3f0c0de0003.*e5f0c0de0005.*\) — merge them first \(`alembic merge/
  )
})

test('Scenario 2: the migration ran but the code did not deploy', async () => {
  // The new release (bad fixture) migrated the database to d4f0c0de0004; the old code's head is R3.
  await alembicFor(BAD).upgrade('head')
  const oldCode = alembicFor(APP)
  const error = await oldCode.current().catch((e: unknown) => e)
  expect(error).toBeInstanceOf(OperationError)
  expect((error as Error).message).toMatch(
    /at alembic revision d4f0c0de0004, which the migrations .* do not contain/
  )

  const newRelease = alembicFor(BAD)
  const history = await newRelease.history()
  const [codeHead] = (await oldCode.heads()) as [string]
  const message = detectVersionMismatch(codeHead, await newRelease.current(), history)
  expect(message).toMatch(/migration ran but the code did not deploy .*`alembic downgrade c3f0c0de0003`/)
  expect(detectVersionMismatch('d4f0c0de0004', [R3], history)).toMatch(
    /migrations did not run — run `alembic upgrade head`/
  )
  expect(detectVersionMismatch(R3, [R3])).toBeUndefined()
  expect(detectVersionMismatch(R3, [])).toMatch(/database is at base but the code expects c3f0c0de0003/)

  // The runbook's fix, run from the release that has the migration: downgrade -1 → the old code matches.
  expect(await newRelease.downgrade('-1')).toEqual([R3])
  expect(detectVersionMismatch(codeHead, await oldCode.current())).toBeUndefined()
})

test('Scenario 1: a foreign-key violation after a migration → downgrade → foreign_key_check → restore', async () => {
  const alembic = alembicFor(APP)
  await alembic.upgrade(R2)
  await sqliteExec(
    db,
    "INSERT INTO players (id, name) VALUES (1, 'ada'), (2, 'bob');\nINSERT INTO game_rooms (id, code, host_player_id) VALUES (10, 'ABC123', 1), (11, 'XYZ789', 2);"
  )
  const backup = path.join(dir, 'vbrpg_backup_pre_migration.db')
  copyFileSync(db, backup)

  await alembic.upgrade('head')
  // Code on the new schema deletes a host with foreign keys off; with them on, SQLite now refuses writes.
  await sqliteExec(db, 'DELETE FROM players WHERE id = 2;')
  await expect(
    sqliteExec(db, 'PRAGMA foreign_keys = ON;\nUPDATE game_rooms SET host_player_id = 3 WHERE id = 11;')
  ).rejects.toThrow(/FOREIGN KEY constraint failed/)

  // Step 1: roll the migration back.
  expect(await alembic.downgrade('-1')).toEqual([R2])
  // Step 2: check data consistency — the orphaned room survives the downgrade.
  expect(await sqliteExec(db, 'PRAGMA foreign_key_check;')).toBe('game_rooms|11|players|0\n')
  // Step 3: inconsistencies found → restore from the backup.
  copyFileSync(backup, db)
  expect(await sqliteExec(db, 'PRAGMA foreign_key_check;')).toBe('')
  expect(await sqliteExec(db, 'PRAGMA integrity_check;')).toBe('ok\n')
  expect(await sqliteExec(db, 'SELECT count(*) FROM players; SELECT count(*) FROM game_rooms;')).toBe(
    '2\n2\n'
  )
  expect(await alembic.current()).toEqual([R2])
})
