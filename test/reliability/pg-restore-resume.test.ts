import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { MemoryLogger } from '../../src/core/logger'
import { loadConfig } from '../../src/drivers/config-file'
import { pgQuery } from '../../src/drivers/database'
import { runCommand } from '../../src/drivers/exec'
import { recoverInterruptedRestore } from '../../src/drivers/postgres-backup'
import { clusterPid, describeCluster, findPgBinDir, startCluster } from '../../src/drivers/postgres-cluster'
import { rollback } from '../../src/engine/rollback'
import { createService } from '../../src/engine/service'
import { takeSnapshot } from '../../src/engine/snapshot'
import { startSandbox, type TestSandbox } from '../support/cli'

/**
 * Issue #18.4 at the level of a user's run: a physical restore killed between moving the original data directory
 * aside and moving the restored one in leaves NO directory at database.dataDir. Re-running Level 3 then used to see
 * "no PostgreSQL cluster" (no PG_VERSION), take the logical path and fail with ECONNREFUSED. It must converge: the
 * interrupted swap undone (original back and started), then the restore done, the data equal to the snapshot.
 */
const ROOT = path.resolve(__dirname, '../..')

let sb: TestSandbox | undefined
afterAll(async () => {
  await sb?.down()
})

test('Level 3 re-run after a kill that left no data directory converges', async () => {
  sb = await startSandbox()
  const service = createService(loadConfig(sb.config), new MemoryLogger())
  const db = service.config.database
  if (db?.kind !== 'postgres' || !db.dataDir) throw new Error('expected a PostgreSQL sandbox with dataDir')
  const url = db.url
  const fingerprint = async (): Promise<string | null | undefined> =>
    (
      await pgQuery<{ h: string | null }>(
        url,
        `SELECT md5(string_agg(u::text, '|' ORDER BY id)) AS h FROM users u`
      )
    )[0]?.h
  const snap = await takeSnapshot(service, { safety: false })
  const before = await fingerprint()
  await pgQuery(url, "UPDATE users SET email = 'bad' || id || '@corrupt.test'")

  const cluster = describeCluster({ dataDir: db.dataDir, port: Number(new URL(url).port) }, findPgBinDir())
  const logFile = path.join(sb.dir, 'pg/postgres.log')
  const args = JSON.stringify({
    dataDir: cluster.dataDir,
    port: cluster.port,
    binDir: cluster.binDir,
    logFile,
    backupDir: path.join(snap.dir, 'database/base.tar.zst')
  })
  // Kill before each rename in turn until one leaves no data directory (the original aside, the restored not in).
  let n = 1
  for (; n <= 6; n++) {
    const res = await runCommand(
      [
        'strace',
        '-qq',
        '-o',
        '/dev/null',
        '-e',
        'trace=rename',
        '-e',
        `inject=rename:signal=SIGKILL:when=${n}`,
        process.execPath,
        '--import',
        'tsx',
        path.join(ROOT, 'test/support/pg-restore-child.ts'),
        args
      ],
      { cwd: ROOT }
    )
    expect({ n, code: res.code, stderr: res.stderr.slice(-500) }).toMatchObject({
      n,
      code: expect.any(Number)
    })
    expect([128, 137]).toContain(res.code)
    if (!existsSync(db.dataDir)) break
    await recoverInterruptedRestore(cluster, new Date(), undefined, logFile)
    if (!clusterPid(db.dataDir)) await startCluster(cluster, logFile)
  }
  expect(existsSync(db.dataDir)).toBe(false)
  expect(existsSync(`${db.dataDir}.backout-restore.json`)).toBe(true)

  const { record, error } = await rollback(service, {
    level: 3,
    reason: 'resume after a kill',
    dryRun: false,
    confirm: () => Promise.resolve(true),
    target: snap.id
  })
  expect(error).toBeUndefined()
  expect(record.status).toBe('success')
  expect(existsSync(path.join(db.dataDir, 'PG_VERSION'))).toBe(true)
  expect(existsSync(`${db.dataDir}.backout-restore.json`)).toBe(false)
  expect(await fingerprint()).toBe(before)
  expect(readFileSync(path.join(sb.dir, 'rollback_history.log'), 'utf8')).toMatch(/LEVEL=3 .*STATUS=success/)
  console.log(
    `killed before rename ${n}: no data directory; Level 3 re-run converged (${record.steps.find(s => s.name === 'Database restoration')?.detail})`
  )
})
