import { spawnSync } from 'node:child_process'
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeSync
} from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { UserError } from '../../src/core/errors'
import { sha256File } from '../../src/drivers/archive'
import {
  corruptedName,
  foreignKeyCheck,
  integrityCheck,
  onlineBackup,
  restore,
  schemaVersion,
  tableCounts
} from '../../src/drivers/sqlite'

let root: string
beforeEach(() => {
  root = mkdtempSync(path.join(tmpdir(), 'backout-sqlite-'))
})
afterEach(() => {
  rmSync(root, { recursive: true, force: true })
})

function sqlite(db: string, sql: string): string {
  const r = spawnSync('sqlite3', ['-batch', '-bail', db], { input: sql, encoding: 'utf8' })
  if (r.status !== 0) throw new Error(r.stderr)
  return r.stdout
}

function makeDb(db: string): void {
  sqlite(
    db,
    `PRAGMA journal_mode = WAL;
     CREATE TABLE players (id INTEGER PRIMARY KEY, name TEXT NOT NULL, bio TEXT);
     CREATE TABLE games (id INTEGER PRIMARY KEY, player_id INTEGER REFERENCES players(id), score INTEGER);
     CREATE INDEX games_player ON games(player_id);
     CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY);
     WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 3000)
       INSERT INTO players SELECT n, 'player ' || n, hex(randomblob(60)) FROM g;
     WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 6000)
       INSERT INTO games SELECT n, 1 + n % 3000, n * 7 % 1000 FROM g;
     INSERT INTO schema_migrations VALUES (101), (102), (103), (104);`
  )
}

/** Overwrites bytes in the middle of a b-tree page (page 2 onwards), the way a torn write would. */
function corruptPages(file: string): void {
  const fd = openSync(file, 'r+')
  const size = readFileSync(file).length
  for (const page of [2, 3, Math.floor(size / 4096 / 2)])
    writeSync(fd, Buffer.alloc(200, 0xa5), 0, 200, page * 4096 + 8)
  closeSync(fd)
}

test('online backup, corrupt the live file, restore: integrity ok and counts equal', async () => {
  const db = path.join(root, 'vbrpg.db')
  makeDb(db)
  const backups = path.join(root, 'backups')
  spawnSync('mkdir', ['-p', backups])
  const backupFile = path.join(backups, 'vbrpg_backup_20251109_143022.db')
  const b = await onlineBackup(db, backupFile)
  expect(b.counts).toEqual({ games: 6000, players: 3000, schema_migrations: 4 })
  expect(b.schemaVersion).toBe('104')
  expect(b.sha256).toBe(await sha256File(backupFile))
  expect(readdirSync(backups)).toEqual(['vbrpg_backup_20251109_143022.db'])

  sqlite(db, 'PRAGMA wal_checkpoint(TRUNCATE);')
  corruptPages(db)
  const bad = await integrityCheck(db)
  expect(bad.ok).toBe(false)
  expect(bad.problems.length).toBeGreaterThan(0)

  const now = new Date(Date.UTC(2025, 10, 9, 15, 0, 1))
  const res = await restore(db, backupFile, { now })
  const aside = path.join(root, 'vbrpg_corrupted_20251109_150001.db')
  expect(res.movedAside[0]).toBe(aside)
  expect(existsSync(aside)).toBe(true)
  expect((await integrityCheck(aside)).ok).toBe(false) // the bad file is kept as it was, for diagnosis
  expect(await integrityCheck(db)).toEqual({ ok: true, problems: [] })
  expect(res.counts).toEqual(b.counts)
  expect(await tableCounts(db)).toEqual(b.counts)
  expect(res.foreignKeyProblems).toEqual([])
  expect(res.schemaVersion).toBe('104')
  expect(sqlite(db, 'PRAGMA journal_mode;').trim()).toBe('wal') // the live file's journal mode is kept
  expect(readdirSync(root).filter(n => n.includes('restoring'))).toEqual([])
})

test('a corrupted backup is refused before the live file is touched', async () => {
  const db = path.join(root, 'app.db')
  makeDb(db)
  const backupFile = path.join(root, 'app_backup.db')
  await onlineBackup(db, backupFile)
  corruptPages(backupFile)
  const liveBefore = await sha256File(db)
  const before = readdirSync(root).sort()

  const err = await restore(db, backupFile).catch((e: unknown) => e)
  expect(err).toBeInstanceOf(UserError)
  expect((err as Error).message).toMatch(/app_backup\.db fails integrity_check, refusing/)
  expect(await sha256File(db)).toBe(liveBefore)
  expect(readdirSync(root).sort()).toEqual(before) // nothing moved aside, no temp file
})

test('foreign_key_check reports dangling rows; -wal and -shm move aside with the file', async () => {
  const db = path.join(root, 'fk.db')
  makeDb(db)
  sqlite(db, 'INSERT INTO games VALUES (99999, 424242, 1);')
  expect(await foreignKeyCheck(db)).toEqual([{ table: 'games', rowid: 99999, parent: 'players', fkid: 0 }])

  const backupFile = path.join(root, 'fk_backup.db')
  await onlineBackup(db, backupFile)
  // keep the live file open in WAL mode so -wal/-shm exist, as with a running application
  sqlite(db, 'PRAGMA wal_autocheckpoint = 0; INSERT INTO players VALUES (5000, "late", NULL);')
  const now = new Date(Date.UTC(2025, 0, 2, 3, 4, 5))
  const res = await restore(db, backupFile, { now })
  const aside = corruptedName(db, now)
  expect(path.basename(aside)).toBe('fk_corrupted_20250102_030405.db')
  for (const f of res.movedAside) expect(existsSync(f)).toBe(true)
  expect(res.foreignKeyProblems).toHaveLength(1)
  expect(res.counts.players).toBe(3000)
  expect(await schemaVersion(db)).toBe('104')
})
