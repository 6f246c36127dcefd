import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { MemoryLogger } from '../../src/core/logger'
import { untarZstd } from '../../src/drivers/archive'
import { loadConfig } from '../../src/drivers/config-file'
import { pgQuery } from '../../src/drivers/database'
import { createService, type Service } from '../../src/engine/service'
import { pruneBackups, retentionPlan, takeSnapshot } from '../../src/engine/snapshot'
import { verifyBackup } from '../../src/engine/verify'
import { startSandbox, type TestSandbox } from '../support/cli'

let sb: TestSandbox
let service: Service
beforeAll(async () => {
  sb = await startSandbox()
  service = createService(loadConfig(sb.config), new MemoryLogger())
})
afterAll(async () => {
  await sb.down()
})

test('a snapshot holds the data dir, the dump, the base backup, schema_version.txt; verify drills a restore', async () => {
  const started = performance.now()
  const snap = await takeSnapshot(service, { safety: false })
  console.log(`snapshot: ${Math.round(performance.now() - started)} ms, ${snap.sizeBytes} bytes`)
  const paths = snap.manifest.files.map(f => f.path)
  expect(paths).toEqual(
    expect.arrayContaining([
      'containers.json',
      'images.txt',
      'timestamp.txt',
      'schema_version.txt',
      'data/godot-data.tar.zst',
      'database/dump.tar.zst',
      'database/base.tar.zst'
    ])
  )
  expect(paths.filter(p => /(^|\/)\.(base|pg_dump|toc|restore)|partial/.test(p))).toEqual([]) // no staging left
  expect(readFileSync(path.join(snap.dir, 'schema_version.txt'), 'utf8').trim()).toBe('105')
  expect(snap.manifest.schemaVersion).toBe('105')
  expect(snap.manifest.rowCounts).toMatchObject({
    'public.users': 1000,
    'public.sessions': 2000,
    'public.game_state': 2000
  })
  expect(snap.manifest.database?.base?.startSegment).toMatch(/^[0-9A-F]{24}$/)

  const out = mkdtempSync(path.join(tmpdir(), 'backout-snap-'))
  try {
    await untarZstd(path.join(snap.dir, 'data/godot-data.tar.zst'), out)
    expect(
      readFileSync(path.join(out, 'world.json')).equals(
        readFileSync(path.join(sb.dir, 'data/godot/world.json'))
      )
    ).toBe(true)
  } finally {
    rmSync(out, { recursive: true, force: true })
  }

  const report = await verifyBackup(service, snap.id, { quick: false })
  console.log(`verify with restore drill: ${report.durationMs} ms — ${report.checks.join('; ')}`)
  expect(report.problems).toEqual([])
  expect(report.checks.join(' ')).toMatch(/scratch database .* row counts match/)
  const scratch = await pgQuery<{ datname: string }>(
    service.config.database!.kind === 'postgres' ? service.config.database!.url : '',
    "SELECT datname FROM pg_database WHERE datname LIKE '%backout_verify%'"
  )
  expect(scratch).toEqual([]) // the scratch database was dropped

  // one flipped byte: verify (quick or not) reports it
  const file = path.join(snap.dir, 'database/dump.tar.zst')
  const fd = openSync(file, 'r+')
  writeSync(fd, Buffer.from([0x00, 0xff, 0x00]), 0, 3, 100)
  closeSync(fd)
  const quick = await verifyBackup(service, snap.id, { quick: true })
  expect(quick.ok).toBe(false)
  expect(quick.problems.join(' ')).toMatch(/database\/dump\.tar\.zst: sha256 mismatch/)
})

test('a safety backup is light: data dir and dump, no base backup; recorded in state/last_safety_backup', async () => {
  const safety = await takeSnapshot(service, { safety: true })
  expect(safety.id).toMatch(/^rollback-safety-/)
  const paths = safety.manifest.files.map(f => f.path)
  expect(paths).toEqual(expect.arrayContaining(['data/godot-data.tar.zst', 'database/dump.tar.zst']))
  expect(paths).not.toContain('database/base.tar.zst')
  expect(safety.manifest.light).toBe(true)
  expect(readFileSync(path.join(sb.dir, 'state/last_safety_backup'), 'utf8').trim()).toBe(safety.dir)
})

test('retention keeps N or D days, never the newest snapshot nor the newest safety backup', () => {
  const all = service.store.list()
  expect(all.length).toBeGreaterThanOrEqual(3) // the sandbox's release backup, a snapshot, a safety backup
  const strict = {
    ...service,
    config: { ...service.config, backups: { ...service.config.backups, keep: 1, keepDays: 0.000001 } }
  }
  const plan = retentionPlan(strict, new Date(Date.now() + 60_000))
  const newestSnapshot = all.find(b => b.manifest.kind === 'snapshot')!.id
  const newestSafety = all.find(b => b.manifest.kind === 'safety')!.id
  expect(plan.protected).toEqual(expect.arrayContaining([newestSnapshot, newestSafety]))
  expect(plan.deleted).not.toContain(newestSnapshot)
  expect(plan.deleted).not.toContain(newestSafety)
  expect(plan.deleted.length).toBe(all.length - 2)

  // the default settings (10 backups, 7 days) delete nothing here
  expect(pruneBackups(service).deleted).toEqual([])
  const pruned = pruneBackups(strict, new Date(Date.now() + 60_000))
  expect(pruned.deleted).toEqual(plan.deleted)
  for (const id of pruned.deleted) expect(existsSync(path.join(service.config.backups.dir, id))).toBe(false)
  expect(
    service.store
      .list()
      .map(b => b.id)
      .sort()
  ).toEqual([newestSnapshot, newestSafety].sort())
})
