import { createHash } from 'node:crypto'
import { existsSync, lstatSync, readFileSync, readdirSync } from 'node:fs'
import path from 'node:path'
import { loadConfig } from '../../src/drivers/config-file'
import { runCommand } from '../../src/drivers/exec'
import { findPgBinDir } from '../../src/drivers/postgres-cluster'
import { pgQuery } from '../../src/drivers/database'
import { runCli, startSandbox, whoServes, type TestSandbox } from '../support/cli'

/**
 * #12.6 — a dry run changes nothing: not the data directory, not the backups, not backout's state, not the
 * database. Every level's dry run (1, 2, 3 and 3 with --to-time), run through the CLI as an operator runs it, on a
 * sandbox with a WAL archive; the fingerprint is taken before and after each.
 */
jest.setTimeout(240_000)

let sb: TestSandbox | undefined
afterAll(async () => {
  await sb?.down()
})

/** Every entry under dir: its path, type, size, mtime and — for files up to 1 MiB — a digest of its bytes. */
function tree(dir: string): string[] {
  if (!existsSync(dir)) return ['(absent)']
  const out: string[] = []
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = path.join(d, name)
      const st = lstatSync(p)
      const rel = path.relative(dir, p)
      if (st.isDirectory()) {
        out.push(`${rel}/`)
        walk(p)
      } else {
        const digest =
          st.isFile() && st.size <= 1 << 20
            ? createHash('sha256').update(readFileSync(p)).digest('hex').slice(0, 16)
            : ''
        out.push(`${rel} ${st.size} ${st.mtimeMs} ${digest}`)
      }
    }
  }
  walk(dir)
  return out
}

interface Fingerprint {
  walLsn?: string
  data: string[]
  dataParent: string[]
  backups: string[]
  state: string[]
  pgParent: string[]
  files: Record<string, string>
  db: Record<string, string>
}

async function fingerprint(dir: string, url: string): Promise<Fingerprint> {
  // Statistics are flushed by a backend when it goes idle or exits: let the dry run's connections report theirs.
  await new Promise(r => setTimeout(r, 1500))
  const [stats] = await pgQuery<Record<string, string>>(
    url,
    `SELECT pg_current_wal_lsn()::text AS wal_lsn,
            pg_snapshot_xmax(pg_current_snapshot())::text AS next_xid,
            (SELECT sum(tup_inserted)::text FROM pg_stat_database) AS tup_inserted,
            (SELECT sum(tup_updated)::text FROM pg_stat_database) AS tup_updated,
            (SELECT sum(tup_deleted)::text FROM pg_stat_database) AS tup_deleted,
            (SELECT archived_count::text FROM pg_stat_archiver) AS archived,
            (SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database) AS databases`
  )
  const { wal_lsn: walLsn, ...db } = stats ?? {}
  const read = (rel: string): string =>
    existsSync(path.join(dir, rel)) ? readFileSync(path.join(dir, rel), 'utf8') : '(absent)'
  return {
    walLsn,
    data: tree(path.join(dir, 'data/godot')),
    dataParent: readdirSync(path.join(dir, 'data')).sort(),
    backups: tree(path.join(dir, 'backups')),
    state: tree(path.join(dir, 'state')),
    pgParent: readdirSync(path.join(dir, 'pg')).sort(),
    files: Object.fromEntries(
      ['nginx/upstream.conf', 'config/.env', 'config/app.json', 'rollback_history.log'].map(f => [f, read(f)])
    ),
    db
  }
}

/**
 * The WAL records written between two positions that change data: a commit, a heap or index write, a WAL switch,
 * a created file. Reads may write WAL too — a hint bit's full-page image, page pruning, the standby's snapshot of
 * running transactions — without changing anything; those are left out.
 */
async function writesBetween(dataDir: string, from: string, to: string): Promise<string[]> {
  if (from === to) return []
  const bin = findPgBinDir()
  if (!bin) throw new Error('PostgreSQL binaries not found')
  const res = await runCommand([
    'runuser',
    '-u',
    'postgres',
    '--',
    path.join(bin, 'pg_waldump'),
    '-p',
    path.join(dataDir, 'pg_wal'),
    '-s',
    from,
    '-e',
    to
  ])
  if (res.code !== 0 && !/end of WAL|invalid record length/.test(res.stderr))
    throw new Error(`pg_waldump failed: ${res.stderr}`)
  const harmless = /desc: (FPI_FOR_HINT|RUNNING_XACTS|PRUNE|VISIBLE|CHECKPOINT_ONLINE|FPI )/
  return res.stdout
    .split('\n')
    .filter(l => l.startsWith('rmgr:') && !harmless.test(l))
    .map(l => l.replace(/^rmgr: (\S+).*desc: (\S+).*$/, '$1 $2'))
}

test('every level’s dry run leaves the data dir, the backups, the state and the database exactly as they were', async () => {
  sb = await startSandbox(['--wal-archive'])
  const config = loadConfig(sb.config)
  if (config.database?.kind !== 'postgres') throw new Error('expected PostgreSQL')
  const url = config.database.url
  // A fresh snapshot with its base backup (taken after the WAL archive is on), then commits on either side of a
  // recovery target, archived — so that --to-time has WAL to reach without the dry run switching anything.
  const snap = await runCli(['--config', sb.config, 'snapshot'])
  expect(snap.code).toBe(0)
  await pgQuery(url, 'CREATE TABLE dry_run_probe (x int)')
  await pgQuery(url, 'INSERT INTO dry_run_probe VALUES (1)')
  await new Promise(r => setTimeout(r, 1100))
  const toTime = new Date().toISOString()
  await new Promise(r => setTimeout(r, 1100))
  await pgQuery(url, 'INSERT INTO dry_run_probe VALUES (2)')
  await pgQuery(url, 'SELECT pg_switch_wal()')
  for (let i = 0; i < 100; i++) {
    const [a] = await pgQuery<{ pending: boolean }>(
      url,
      `SELECT last_archived_wal IS NULL OR last_archived_wal < pg_walfile_name(pg_current_wal_lsn()) AS pending FROM pg_stat_archiver`
    )
    if (!a?.pending) break
    await new Promise(r => setTimeout(r, 100))
  }
  // Quiet the cluster: nothing left for autovacuum to do, a checkpoint written, so that the WAL position and the
  // next transaction id move only if a dry run writes.
  await pgQuery(url, 'VACUUM ANALYZE', 60_000)
  await pgQuery(url, 'CHECKPOINT', 60_000)

  const runs: [string, string[]][] = [
    ['Level 1', ['rollback', '--level', '1', '--dry-run']],
    ['Level 2', ['rollback', '--level', '2', '--dry-run']],
    ['Level 3', ['rollback', '--level', '3', '--dry-run']],
    ['Level 3 --to-time', ['rollback', '--level', '3', '--to-time', toTime, '--dry-run']]
  ]
  const dataDir = path.join(sb.dir, 'pg/data')
  const outcomes: unknown[] = []
  const expected: unknown[] = []
  for (const [what, args] of runs) {
    const { walLsn: lsnBefore, ...before } = await fingerprint(sb.dir, url)
    const res = await runCli(['--config', sb.config, ...args])
    const { walLsn: lsnAfter, ...after } = await fingerprint(sb.dir, url)
    const writes = await writesBetween(dataDir, lsnBefore ?? '', lsnAfter ?? '')
    console.log(
      `${what}: exit ${res.code}, WAL ${lsnBefore} → ${lsnAfter}, data-changing records: ${writes.length}`
    )
    outcomes.push({
      what,
      code: res.code,
      stderr: res.code === 0 ? '' : res.stderr,
      planned: /○ /.test(res.stdout),
      writes,
      ...after
    })
    expected.push({ what, code: 0, stderr: '', planned: true, writes: [], ...before })
  }
  expect(outcomes).toEqual(expected)
  // and the service still runs as before: green serves
  expect(new Set(await whoServes(sb.nginxUrl, 5))).toEqual(new Set(['green']))
})
