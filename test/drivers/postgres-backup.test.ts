import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  openSync,
  writeSync,
  closeSync
} from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Client } from 'pg'
import { OperationError, UserError } from '../../src/core/errors'
import { sha256File } from '../../src/drivers/archive'
import {
  baseBackup,
  checkWalContinuity,
  flushWalToArchive,
  logicalDump,
  logicalRestore,
  physicalRestore,
  prepareWalArchive,
  readDumpToc,
  rowCounts,
  schemaVersion,
  shellQuotePath,
  walArchiveSettings,
  walWindow
} from '../../src/drivers/postgres-backup'
import { clusterPid, psql, startCluster } from '../../src/drivers/postgres-cluster'
import { startTestCluster, type TestCluster } from '../support/pg-test-cluster'

/** The server's clock_timestamp(): recovery targets from the clock the commits are stamped with, not sleeps. */
async function serverNow(cluster: TestCluster): Promise<Date> {
  const text = await psql(
    cluster,
    'postgres',
    `SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`
  )
  return new Date(text.trim())
}

let scratch: string
beforeEach(() => {
  scratch = mkdtempSync(path.join(tmpdir(), 'backout-pgb-'))
  chmodSync(scratch, 0o755) // the postgres user must reach the archive and base backup dirs
})
afterEach(() => {
  rmSync(scratch, { recursive: true, force: true })
})

const APP_SCHEMA = `
CREATE TABLE users (id int PRIMARY KEY, name text NOT NULL, email text);
CREATE TABLE orders (id int PRIMARY KEY, user_id int REFERENCES users(id), total numeric(10,2));
CREATE TABLE schema_migrations (version bigint PRIMARY KEY);
INSERT INTO users SELECT g, 'user ' || g, 'u' || g || '@example.com' FROM generate_series(1, 3000) g;
INSERT INTO orders SELECT g, 1 + g % 3000, (g % 997) / 10.0 FROM generate_series(1, 8000) g;
INSERT INTO schema_migrations VALUES (101), (102), (103), (104);
`

async function fingerprint(cluster: TestCluster, db: string): Promise<string> {
  return (
    await psql(
      cluster,
      db,
      `SELECT (SELECT md5(string_agg(u::text, ',' ORDER BY id)) FROM users u) || ' ' ||
              (SELECT md5(string_agg(o::text, ',' ORDER BY id)) FROM orders o)`
    )
  ).trim()
}

function flipByte(file: string, pos: number): void {
  const b = readFileSync(file)
  const fd = openSync(file, 'r+')
  writeSync(fd, Buffer.from([(b[pos] ?? 0) ^ 0xff]), 0, 1, pos)
  closeSync(fd)
}

describe('logical dump and restore', () => {
  let cluster: TestCluster
  beforeAll(async () => {
    cluster = await startTestCluster()
    await psql(cluster, 'postgres', 'CREATE DATABASE app')
    await psql(cluster, 'app', APP_SCHEMA)
  })
  afterAll(async () => {
    await cluster.stop()
  })

  test('dump, drop a table and corrupt rows, restore: the data equals the dump', async () => {
    const before = await fingerprint(cluster, 'app')
    const out = path.join(scratch, 'store', 'database.tar.zst')
    const dump = await logicalDump({ url: cluster.url('app'), binDir: cluster.binDir, outFile: out, jobs: 2 })
    expect(dump.sha256).toBe(await sha256File(out))
    expect(dump.size).toBe(statSync(out).size)
    expect(readdirSync(path.dirname(out))).toEqual(['database.tar.zst']) // the staging dir is gone
    console.log(`logicalDump: ${dump.size} bytes, pg_dump ${dump.dumpMs} ms, tar|zstd ${dump.compressMs} ms`)

    const toc = await readDumpToc({ file: out, binDir: cluster.binDir })
    expect(toc.tables).toEqual(
      expect.arrayContaining(['public.users', 'public.orders', 'public.schema_migrations'])
    )

    await psql(
      cluster,
      'app',
      `DROP TABLE orders; UPDATE users SET name = 'CORRUPT' WHERE id <= 100; DELETE FROM users WHERE id > 2900;`
    )
    expect(await fingerprint(cluster, 'app').catch(() => 'broken')).not.toBe(before)

    // An application connection is open on the database: the restore must end it, not wait on it.
    const app = new Client({ connectionString: cluster.url('app') })
    await app.connect()
    app.on('error', () => undefined)
    const res = await logicalRestore({ url: cluster.url('postgres'), database: 'app', file: out, jobs: 2 })
    await app.end().catch(() => undefined)

    expect(await fingerprint(cluster, 'app')).toBe(before)
    expect(res.rowCounts).toEqual(dump.rowCounts)
    expect(res.schemaVersion).toEqual({ source: 'schema_migrations', version: '104' })
    const dbs = (await psql(cluster, 'postgres', 'SELECT datname FROM pg_database ORDER BY 1'))
      .trim()
      .split('\n')
    expect(dbs.filter(d => d.startsWith('app'))).toEqual(['app']) // no side or replaced database left
    console.log(`logicalRestore: extract ${res.extractMs} ms, pg_restore ${res.restoreMs} ms`)
  })

  test('row counts and schema version are recorded in the dump, exact and in its snapshot', async () => {
    const dump = await logicalDump({
      url: cluster.url('app'),
      binDir: cluster.binDir,
      outFile: path.join(scratch, 'd.tar.zst')
    })
    expect(dump.rowCounts).toEqual({
      'public.orders': 8000,
      'public.schema_migrations': 4,
      'public.users': 3000
    })
    expect(dump.schemaVersion).toEqual({ source: 'schema_migrations', version: '104' })
    expect(dump.database).toBe('app')
    expect(new Date(dump.snapshotTime).getTime()).toBeLessThanOrEqual(Date.now())
    expect(await rowCounts(cluster.url('app'), ['users', 'public.orders'])).toEqual({
      'public.users': 3000,
      'public.orders': 8000
    })

    await psql(cluster, 'postgres', 'CREATE DATABASE alembic_app')
    await psql(
      cluster,
      'alembic_app',
      `CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY); INSERT INTO alembic_version VALUES ('ae1027a6acf');`
    )
    expect(await schemaVersion(cluster.url('alembic_app'))).toEqual({
      source: 'alembic_version',
      version: 'ae1027a6acf'
    })
    await psql(cluster, 'postgres', 'CREATE DATABASE bare')
    expect(await schemaVersion(cluster.url('bare'))).toBeUndefined()
  })

  test('a corrupted dump is refused before the database is touched', async () => {
    const out = path.join(scratch, 'bad.tar.zst')
    await logicalDump({ url: cluster.url('app'), binDir: cluster.binDir, outFile: out })
    const before = await fingerprint(cluster, 'app')
    flipByte(out, Math.floor(statSync(out).size / 2))
    await expect(readDumpToc({ file: out, binDir: cluster.binDir })).rejects.toThrow(UserError)
    const err = await logicalRestore({ url: cluster.url('postgres'), database: 'app', file: out }).catch(
      (e: unknown) => e
    )
    expect(err).toBeInstanceOf(UserError)
    expect((err as Error).message).toMatch(/bad\.tar\.zst is corrupt/)
    expect(await fingerprint(cluster, 'app')).toBe(before)
  })
})

/** A cluster archiving WAL into scratch/archive, with one table `events` and a base backup taken. */
async function archivingCluster(): Promise<{ cluster: TestCluster; archive: string; base: string }> {
  const archive = path.join(scratch, 'archive')
  prepareWalArchive(archive)
  const cluster = await startTestCluster(walArchiveSettings(archive, { archiveTimeoutSeconds: 60 }))
  await psql(
    cluster,
    'postgres',
    `CREATE TABLE events (id serial PRIMARY KEY, label text, at timestamptz DEFAULT clock_timestamp());
    INSERT INTO events (label) SELECT 'base ' || g FROM generate_series(1, 1000) g;`
  )
  const base = path.join(scratch, 'base')
  await baseBackup({ cluster, outDir: base, label: 'test base' })
  return { cluster, archive, base }
}

async function labels(cluster: TestCluster, prefix: string): Promise<string[]> {
  const out = await psql(
    cluster,
    'postgres',
    `SELECT label FROM events WHERE label LIKE '${prefix}%' ORDER BY id`
  )
  return out.trim() ? out.trim().split('\n') : []
}

describe('base backup, WAL archive and point-in-time recovery', () => {
  test('recovery to T keeps every commit before T and none after', async () => {
    const { cluster, archive, base } = await archivingCluster()
    try {
      const before: string[] = []
      for (let i = 0; i < 5; i++) {
        await psql(cluster, 'postgres', `INSERT INTO events (label) VALUES ('before ${i}')`)
        before.push(`before ${i}`)
      }
      // T from the server's clock, after the last 'before' commit and before the first 'after' one (no sleeps).
      const T = await serverNow(cluster)
      for (let i = 0; i < 5; i++)
        await psql(cluster, 'postgres', `INSERT INTO events (label) VALUES ('after ${i}')`)
      await psql(cluster, 'postgres', `DELETE FROM events WHERE label LIKE 'base %'`) // the "bad change"

      const window = await walWindow(archive, base, cluster.binDir)
      expect(window.continuous).toBe(true)
      expect(new Date(window.earliest).getTime()).toBeLessThan(T.getTime())

      const t0 = Date.now()
      const res = await physicalRestore({
        cluster,
        logFile: cluster.logFile,
        backupDir: base,
        walArchiveDir: archive,
        targetTime: T
      })
      console.log(
        `physicalRestore to T: ${Date.now() - t0} ms; stopped before xid ${res.stoppedBefore?.xid} at ${res.stoppedBefore?.time}`
      )
      expect(await labels(cluster, 'before')).toEqual(before)
      expect(await labels(cluster, 'after')).toEqual([])
      expect((await labels(cluster, 'base')).length).toBe(1000)
      expect(res.stoppedBefore && new Date(res.stoppedBefore.time) > T).toBe(true)
      expect(res.lastReplayed && new Date(res.lastReplayed) <= T).toBe(true)
      // the old data directory is kept, the cluster is writable (promoted), and no journal is left
      expect(res.previousDataDir && existsSync(path.join(res.previousDataDir, 'PG_VERSION'))).toBe(true)
      expect((await psql(cluster, 'postgres', 'SELECT pg_is_in_recovery()')).trim()).toBe('f')
      await psql(cluster, 'postgres', `INSERT INTO events (label) VALUES ('after restore')`)
      expect(existsSync(`${cluster.dataDir}.backout-restore.json`)).toBe(false)
    } finally {
      await cluster.stop()
    }
  })

  test('a target beyond the archived WAL is refused before anything stops, and if forced, fails loudly and is undone', async () => {
    const { cluster, archive, base } = await archivingCluster()
    try {
      await psql(cluster, 'postgres', `INSERT INTO events (label) VALUES ('archived')`)
      await flushWalToArchive(cluster)
      await psql(cluster, 'postgres', `INSERT INTO events (label) VALUES ('not archived')`)
      const T = await serverNow(cluster)
      // The database went down; its newest WAL never reached the archive.
      const { stopCluster } = await import('../../src/drivers/postgres-cluster')
      await stopCluster(cluster)

      const c = await checkWalContinuity(
        archive,
        (await walWindow(archive, base, cluster.binDir)).fromSegment,
        T,
        cluster.binDir
      )
      expect(c.continuous).toBe(true)
      expect(c.reachesTarget).toBe(false)

      const refused = await physicalRestore({
        cluster,
        logFile: cluster.logFile,
        backupDir: base,
        walArchiveDir: archive,
        targetTime: T
      }).catch((e: unknown) => e)
      expect(refused).toBeInstanceOf(UserError)
      expect((refused as Error).message).toMatch(/archived WAL ends before/)
      expect(
        readdirSync(path.dirname(cluster.dataDir)).filter(n => /replaced|restoring|failed/.test(n))
      ).toEqual([])

      // Skip the preflight: PostgreSQL itself must be caught not reaching the target.
      const failed = await physicalRestore({
        cluster,
        logFile: cluster.logFile,
        backupDir: base,
        walArchiveDir: archive,
        targetTime: T,
        verifyWal: false
      }).catch((e: unknown) => e)
      expect(failed).toBeInstanceOf(OperationError)
      expect((failed as OperationError).reasonCode).toBe('recovery_target_not_reached')
      expect((failed as Error).message).toMatch(
        /recovery ended before configured recovery target was reached/
      )
      const siblings = readdirSync(path.dirname(cluster.dataDir))
      expect(siblings.filter(n => /backout-failed-/.test(n))).toHaveLength(1)
      expect(siblings.filter(n => /replaced-|restoring|restore\.json/.test(n))).toEqual([])
      // The original data directory is back, untouched: it starts and holds the unarchived row.
      expect(clusterPid(cluster.dataDir)).toBeUndefined()
      await startCluster(cluster, cluster.logFile)
      expect(await labels(cluster, 'not archived')).toEqual(['not archived'])
    } finally {
      await cluster.stop()
    }
  })

  test('without a target time, recovery stops at the end of the base backup', async () => {
    const { cluster, base } = await archivingCluster()
    try {
      await psql(cluster, 'postgres', `INSERT INTO events (label) VALUES ('later')`)
      const res = await physicalRestore({ cluster, logFile: cluster.logFile, backupDir: base })
      expect(await labels(cluster, 'later')).toEqual([])
      expect((await labels(cluster, 'base')).length).toBe(1000)
      expect(res.previousDataDir).toBeDefined()
    } finally {
      await cluster.stop()
    }
  })

  test('WAL continuity: a missing segment is a gap; archive paths with quotes are refused', async () => {
    const { cluster, archive, base } = await archivingCluster()
    try {
      for (let i = 0; i < 3; i++) {
        await psql(cluster, 'postgres', `INSERT INTO events (label) VALUES ('x${i}')`)
        await flushWalToArchive(cluster)
      }
      const w = await walWindow(archive, base, cluster.binDir)
      expect(w.continuous).toBe(true)
      expect(w.latest).toBeDefined()
      const segs = readdirSync(archive)
        .filter(n => /^[0-9A-F]{24}$/.test(n))
        .sort()
      const middle = segs[Math.floor(segs.length / 2)] ?? ''
      rmSync(path.join(archive, middle))
      const gap = await checkWalContinuity(archive, w.fromSegment, undefined, cluster.binDir)
      expect(gap.continuous).toBe(false)
      expect(gap.missing).toBe(middle)
      expect(gap.problems.join(' ')).toMatch(/WAL gap/)
    } finally {
      await cluster.stop()
    }
    expect(() => shellQuotePath("/tmp/it's")).toThrow(UserError)
    expect(() => shellQuotePath('/tmp/a%f')).toThrow(UserError)
    expect(() => shellQuotePath('relative/dir')).toThrow(UserError)
    expect(shellQuotePath('/tmp/wal archive')).toBe("'/tmp/wal archive'")
  })
})
