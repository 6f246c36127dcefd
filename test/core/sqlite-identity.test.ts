import {
  type SqliteIdentity,
  backoutId,
  foreignSqliteBackup,
  isBackoutId
} from '../../src/core/sqlite-identity'

/** The decision whether a SQLite backup may replace the configured database (no I/O). */

const APP = ['alembic_version', 'players', 'game_rooms']
const id = (applicationId: number, tables = APP, path = '/srv/app/app.db'): SqliteIdentity => ({
  path,
  applicationId,
  tables,
  schemaSha256: 'x'
})
const ours = backoutId(0x123456)
const theirs = backoutId(0x654321)

test('backout identities carry the tag and are never the untagged 0', () => {
  expect(isBackoutId(ours)).toBe(true)
  expect(ours >>> 24).toBe(0x42)
  expect(isBackoutId(backoutId(0))).toBe(true)
  expect(backoutId(0)).toBe(0x42000001)
  expect(isBackoutId(0)).toBe(false)
  expect(isBackoutId(0x0f055112)).toBe(false) // an application's own (Fossil's)
})

test('the same database at an older schema passes: same identity, other tables', () => {
  expect(foreignSqliteBackup(id(ours, ['alembic_version', 'players']), id(ours))).toBeUndefined()
})

test('another identity is refused, whatever the tables and path', () => {
  expect(foreignSqliteBackup(id(theirs), id(ours), id(theirs))).toMatch(
    /it holds database 0x42654321 \(captured from \/srv\/app\/app\.db\), and the configured database \/srv\/app\/app\.db is 0x42123456/
  )
})

test('where the identity cannot decide, a backup sharing no table (bookkeeping aside) is refused', () => {
  // Taken before backout marked the database (0): shares tables → passes; shares none → refused.
  expect(foreignSqliteBackup(id(0), id(ours))).toBeUndefined()
  expect(foreignSqliteBackup(id(0, ['alembic_version', 'posts']), id(ours))).toMatch(
    /shares no table with the configured database \/srv\/app\/app\.db: it holds posts, the database holds players, game_rooms/
  )
  // A live file backout never marked (re-created after a disaster): the backup restores.
  expect(foreignSqliteBackup(id(ours), id(0, []))).toBeUndefined()
  expect(foreignSqliteBackup(id(ours), id(0))).toBeUndefined()
})

test('a file whose identity is not the recorded one was put in the backup’s place', () => {
  expect(foreignSqliteBackup(id(theirs), id(ours), id(ours))).toMatch(
    /its file's application_id is 0x42654321, the backup recorded 0x42123456/
  )
})

test('no live database: nothing to compare with', () => {
  expect(foreignSqliteBackup(id(theirs), undefined, id(theirs))).toBeUndefined()
})
