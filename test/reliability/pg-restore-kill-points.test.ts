import { chmodSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { runCommand } from '../../src/drivers/exec'
import {
  baseBackup,
  physicalRestore,
  recoverInterruptedRestore,
  prepareWalArchive,
  walArchiveSettings
} from '../../src/drivers/postgres-backup'
import { psql, startCluster, stopCluster } from '../../src/drivers/postgres-cluster'
import { startTestCluster, type TestCluster } from '../support/pg-test-cluster'

/**
 * Issue #18.4: a physical restore killed (SIGKILL) right before each rename of its data-directory swap — the staged
 * copy moved in place, the original moved aside, the restored one moved in, and on the undo path the failed one moved
 * out and the original moved back — and then run again. Every re-run converges: a data directory at the configured
 * place, the server answering with the restored data, no journal, staging or stray directory left. And a
 * point-in-time recovery killed while its server replays (which then promotes and archives a new timeline on its own)
 * is re-run at once, with everything stopped, and succeeds instead of reporting a "WAL gap".
 */
const ROOT = path.resolve(__dirname, '../..')
const CHILD = path.join(ROOT, 'test/support/pg-restore-child.ts')

let scratch: string
let cluster: TestCluster | undefined
beforeAll(() => {
  scratch = mkdtempSync(path.join(tmpdir(), 'backout-kill-'))
  chmodSync(scratch, 0o755)
})
afterAll(async () => {
  await cluster?.stop()
  rmSync(scratch, { recursive: true, force: true })
})

async function labels(c: TestCluster, like: string): Promise<string[]> {
  const out = (
    await psql(c, 'postgres', `SELECT label FROM events WHERE label LIKE '${like}' ORDER BY id`)
  ).trim()
  return out ? out.split('\n') : []
}

/**
 * Runs physicalRestore in a child process; with killAtRename = N, strace kills it (SIGKILL) on entering its Nth
 * rename(2), before the rename happens. Returns how it ended.
 */
async function child(
  c: TestCluster,
  options: Record<string, unknown>,
  killAtRename?: number,
  env: Record<string, string> = {}
): Promise<{ code: number; stderr: string; killed: boolean }> {
  const args = JSON.stringify({
    dataDir: c.dataDir,
    port: c.port,
    binDir: c.binDir,
    logFile: c.logFile,
    ...options
  })
  const node = [process.execPath, '--import', 'tsx', CHILD, args]
  const strace = killAtRename
    ? [
        'strace',
        '-qq',
        '-o',
        '/dev/null',
        '-e',
        'trace=rename',
        '-e',
        `inject=rename:signal=SIGKILL:when=${killAtRename}`
      ]
    : []
  const res = await runCommand([...strace, ...node], { cwd: ROOT, env: { ...process.env, ...env } })
  return { code: res.code, stderr: res.stderr, killed: res.code === 128 || res.code === 137 }
}

/** A scratch copy of the base backup (what the engine's prepared extraction is), for consumeBackupDir. */
async function scratchCopy(base: string, n: number): Promise<string> {
  const dir = path.join(path.dirname(cluster!.dataDir), `base-copy-${n}`)
  rmSync(dir, { recursive: true, force: true })
  await runCommand(['cp', '-a', base, dir])
  return dir
}

function leftovers(c: TestCluster): string[] {
  return readdirSync(path.dirname(c.dataDir)).filter(n => /backout-restor|restore\.json/.test(n))
}

test('a restore killed before each rename of its swap converges when run again', async () => {
  const archive = path.join(scratch, 'archive')
  prepareWalArchive(archive)
  const c = await startTestCluster(walArchiveSettings(archive, { archiveTimeoutSeconds: 60 }))
  cluster = c
  await psql(
    c,
    'postgres',
    `CREATE TABLE events (id serial PRIMARY KEY, label text); INSERT INTO events (label) VALUES ('base')`
  )
  const base = path.join(scratch, 'base')
  await baseBackup({ cluster: c, outDir: base, label: 'kill points' })

  // Success path, killed before each rename in turn until a run gets through them all: the scratch copy moved to
  // staging, the journal put in place, the original moved aside, the restored one moved in.
  const killedAt: string[] = []
  for (let n = 1; ; n++) {
    await psql(c, 'postgres', `INSERT INTO events (label) VALUES ('later ${n}')`)
    const copy = await scratchCopy(base, n)
    const r = await child(c, { backupDir: copy, consumeBackupDir: true, walArchiveDir: archive }, n)
    if (!r.killed) {
      expect({ n, code: r.code, stderr: r.stderr }).toMatchObject({ n, code: 0 })
      expect(n).toBeGreaterThanOrEqual(4)
    } else {
      killedAt.push(`restore ${n}`)
      // The re-run (a fresh scratch copy: the consumed one may be gone).
      const again = await physicalRestore({
        cluster: c,
        logFile: c.logFile,
        backupDir: await scratchCopy(base, 100 + n),
        consumeBackupDir: true,
        walArchiveDir: archive
      })
      expect(again.previousDataDir).toBeDefined()
    }
    expect(await labels(c, 'later%')).toEqual([])
    expect(await labels(c, 'base')).toEqual(['base'])
    expect(leftovers(c)).toEqual([])
    if (!r.killed) break
  }

  // Undo path: the server went down before its newest WAL was archived, so recovery cannot reach the target (the
  // pre-flight WAL check skipped to get there); killed before each rename until a run gets through the undo too.
  for (let n = 1; ; n++) {
    await psql(c, 'postgres', `INSERT INTO events (label) VALUES ('kept ${n}')`)
    const target = new Date(
      (
        await psql(
          c,
          'postgres',
          `SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`
        )
      ).trim()
    )
    await stopCluster(c)
    const r = await child(
      c,
      { backupDir: base, walArchiveDir: archive, targetTime: target.toISOString(), verifyWal: false },
      n
    )
    if (r.killed) {
      killedAt.push(`undo ${n}`)
      // The re-run first puts the original back, whatever was renamed already.
      await recoverInterruptedRestore(c, new Date(), undefined, c.logFile)
    } else {
      expect({ n, code: r.code, stderr: r.stderr }).toMatchObject({ n, code: 1 })
      expect(r.stderr).toMatch(/recovery ended before configured recovery target was reached/)
      expect(n).toBeGreaterThanOrEqual(6)
    }
    expect(existsSync(path.join(c.dataDir, 'PG_VERSION'))).toBe(true)
    expect(leftovers(c)).toEqual([])
    await startCluster(c, c.logFile)
    expect((await labels(c, 'kept%')).length).toBe(n)
    if (!r.killed) break
  }
  console.log(`killed before renames ${killedAt.join(', ')}; each re-run converged`)
})

test('a point-in-time recovery killed while replaying is re-run at once, everything stopped, and succeeds', async () => {
  await cluster?.stop()
  const archive = path.join(scratch, 'archive2')
  prepareWalArchive(archive)
  const c = await startTestCluster(walArchiveSettings(archive, { archiveTimeoutSeconds: 60 }))
  cluster = c
  await psql(c, 'postgres', `CREATE TABLE events (id serial PRIMARY KEY, label text)`)
  const base = path.join(scratch, 'base2')
  await baseBackup({ cluster: c, outDir: base, label: 'pitr kill' })
  await psql(c, 'postgres', `INSERT INTO events (label) VALUES ('good')`)
  const t = new Date(
    (
      await psql(
        c,
        'postgres',
        `SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`
      )
    ).trim()
  )
  await psql(c, 'postgres', `INSERT INTO events (label) VALUES ('bad')`)
  for (let i = 0; i < 3; i++)
    await psql(c, 'postgres', `INSERT INTO events (label) VALUES ('bad ${i}'); SELECT pg_switch_wal();`)
  const tlisBefore = readdirSync(archive).filter(n => n.endsWith('.history'))

  const r = await child(
    c,
    { backupDir: base, walArchiveDir: archive, targetTime: t.toISOString() },
    undefined,
    { BACKOUT_TEST_KILL_AT: 'recovery-started' }
  )
  expect({ killed: r.killed, stderr: r.stderr }).toMatchObject({ killed: true })
  // The orphaned server finishes its recovery alone and archives its new timeline's history.
  const deadline = Date.now() + 30_000
  while (
    readdirSync(archive).filter(n => n.endsWith('.history')).length === tlisBefore.length &&
    Date.now() < deadline
  )
    await new Promise(res => setTimeout(res, 100))
  expect(readdirSync(archive).filter(n => n.endsWith('.history')).length).toBeGreaterThan(tlisBefore.length)

  const again = await physicalRestore({
    cluster: c,
    logFile: c.logFile,
    backupDir: base,
    walArchiveDir: archive,
    targetTime: t
  })
  expect(again.stoppedBefore && new Date(again.stoppedBefore.time) > t).toBe(true)
  expect(await labels(c, 'good')).toEqual(['good'])
  expect(await labels(c, 'bad%')).toEqual([])
  expect(leftovers(c)).toEqual([])
})
