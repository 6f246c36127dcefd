import { cpSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import type { Manifest } from '../../src/core/manifest'
import { MemoryLogger } from '../../src/core/logger'
import { sha256File } from '../../src/drivers/archive'
import { loadConfig } from '../../src/drivers/config-file'
import { runCommand } from '../../src/drivers/exec'
import { createService } from '../../src/engine/service'
import { validate } from '../../src/engine/validate'
import { runCli, startSandbox, whoServes } from '../support/cli'

test('the embedded default: a sandbox on SQLite, Level 1 through nginx, validation with integrity_check', async () => {
  const sb = await startSandbox(['--db', 'sqlite'])
  try {
    const cfg = loadConfig(sb.config)
    expect(cfg.database?.kind).toBe('sqlite')
    const res = await runCli(['--config', sb.config, 'rollback', '--quick'])
    expect(res.code).toBe(0)
    expect(new Set(await whoServes(sb.nginxUrl, 20))).toEqual(new Set(['blue']))
    const report = await validate(createService(cfg, new MemoryLogger()), { thorough: false })
    expect(report.checks.find(c => c.name === 'database integrity')).toMatchObject({
      status: 'pass',
      measured: 'integrity_check ok, no foreign key violations'
    })
    expect(report.checks.find(c => c.name === 'critical data')!.measured).toBe(
      'users=1000, sessions=2000, game_state=2000'
    )
    expect(report.passed).toBe(true)
  } finally {
    await sb.down()
  }
})

test('Level 3 on SQLite refuses a database file that is not the one captured (manifest resealed to match)', async () => {
  const sb = await startSandbox(['--db', 'sqlite'])
  try {
    const cfg = loadConfig(sb.config)
    const service = createService(cfg, new MemoryLogger())
    const release = service.store.list().find(b => b.manifest.kind === 'snapshot')!
    const id = '20000101-000001'
    const dir = path.join(cfg.backups.dir, id)
    cpSync(release.dir, dir, { recursive: true })
    // Another moment of the same database: one more user than the backup counted.
    const db = path.join(dir, 'database/app.db')
    const res = await runCommand(['sqlite3', db, "INSERT INTO users (name, email) VALUES ('x', 'x@t.test')"])
    expect(res.code).toBe(0)
    const manifestFile = path.join(dir, 'manifest.json')
    const m = JSON.parse(readFileSync(manifestFile, 'utf8')) as Manifest
    const entry = m.files.find(f => f.path === 'database/app.db')!
    entry.size = statSync(db).size
    entry.sha256 = await sha256File(db)
    writeFileSync(manifestFile, JSON.stringify({ ...m, id }, null, 2) + '\n')
    await service.store.seal(id) // the strongest liar: one who holds the key
    const before = readFileSync(cfg.nginx.upstreamFile, 'utf8')
    const out = await runCli([
      '--config',
      sb.config,
      'rollback',
      '--level',
      '3',
      '--auto-confirm',
      '--target',
      id
    ])
    expect({ code: out.code, err: out.stderr }).toMatchObject({ code: 2 })
    expect(out.stderr).toMatch(
      /the SQLite database in backup 20000101-000001 is not the one it captured \(users: 1001, captured 1000\)/
    )
    expect(readFileSync(cfg.nginx.upstreamFile, 'utf8')).toBe(before)
    expect(new Set(await whoServes(sb.nginxUrl, 10))).toEqual(new Set(['green']))
  } finally {
    await sb.down()
  }
})
