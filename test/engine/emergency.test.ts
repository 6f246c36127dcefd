import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { MemoryLogger } from '../../src/core/logger'
import { loadConfig } from '../../src/drivers/config-file'
import { runCommand } from '../../src/drivers/exec'
import { isAlive, readPid } from '../../src/drivers/process'
import { dbCorruption, outageDiagnostics, securityHoldFile } from '../../src/engine/emergency'
import { createService, type Service } from '../../src/engine/service'
import { runCli, startSandbox, type TestSandbox } from '../support/cli'

/** The runbook's Emergency Procedures on one real sandbox (nginx, PostgreSQL, blue and the bad green), in order. */

jest.setTimeout(90_000)

let sb: TestSandbox
let service: Service
beforeAll(async () => {
  sb = await startSandbox()
  service = createService(loadConfig(sb.config), new MemoryLogger())
})
afterAll(async () => {
  await sb.down()
})

test('outage: diagnostics and the recommended action, changing nothing', async () => {
  const green = readPid(path.join(sb.dir, 'run/green.pid'))!
  process.kill(green, 'SIGKILL')
  // The signal is delivered asynchronously: the outage starts once the process is gone.
  for (let i = 0; i < 200 && isAlive(green); i++) await new Promise(r => setTimeout(r, 10))
  appendFileSync(path.join(sb.dir, 'logs/green.log'), 'ERROR database connection refused\n')
  const upstream = readFileSync(path.join(sb.dir, 'nginx/upstream.conf'), 'utf8')

  const r = await outageDiagnostics(service)
  expect(r.active).toBe('green')
  expect(r.targets.find(t => t.color === 'green')).toMatchObject({ running: false, ready: false })
  expect(r.targets.find(t => t.color === 'blue')).toMatchObject({ running: true, ready: true })
  expect(r.ports.find(p => p.name === 'green')!.open).toBe(false)
  expect(r.ports.find(p => p.name === 'nginx')!.open).toBe(true)
  expect(r.docker).toBeUndefined() // process runtime: no daemon to check
  expect(r.disk.detail).toMatch(/free under/)
  expect(r.logs.find(l => l.color === 'green')!.errors).toEqual(['ERROR database connection refused'])
  expect(r.recommendation.level).toBe(1)
  expect(readFileSync(path.join(sb.dir, 'nginx/upstream.conf'), 'utf8')).toBe(upstream)

  const cli = await runCli(['--config', sb.config, 'emergency', 'outage'])
  expect(cli.code).toBe(0)
  expect(cli.stdout).toMatch(/Recommended: Level 1/)
  expect(cli.stdout).toMatch(/green v2\.5\.0: STOPPED/)
})

test('db-corruption: shutdown and emergency snapshot; Level 3 refused keeps both, confirmed recovers', async () => {
  // The green process is dead since the outage test; start from the live one being up is not needed: nginx → green.
  writeFileSync(path.join(sb.dir, 'data/godot/corruption_detected'), 'x')
  const refused = await dbCorruption(service, {
    confirm: () => Promise.resolve(false),
    reason: 'test: refused'
  })
  expect(refused.recovered).toBe(false)
  expect(refused.message).toMatch(/stays STOPPED .* emergency snapshot .* is kept/)
  expect(service.store.get(refused.snapshotId).manifest.kind).toBe('safety')
  expect((await service.runtime.state('green')).running).toBe(false)

  const ok = await dbCorruption(service, { confirm: () => Promise.resolve(true), reason: 'test: corruption' })
  expect(ok.level3.error).toBeUndefined()
  expect(ok.recovered).toBe(true)
  expect(ok.level3.record.level).toBe(3)
  expect(existsSync(path.join(sb.dir, 'data/godot/corruption_detected'))).toBe(false)
  expect(service.store.get(ok.snapshotId).manifest.kind).toBe('safety')
  expect((await service.runtime.state('blue')).running).toBe(true)
})

test('security: isolation, a checksummed evidence archive, and a hold only release lifts', async () => {
  const res = await runCli([
    '--config',
    sb.config,
    'emergency',
    'security',
    '--reason',
    'test: suspicious logins'
  ])
  expect(res.code).toBe(0)
  const config = service.config
  expect((await service.runtime.state('blue')).running).toBe(false)
  expect((await service.runtime.state('green')).running).toBe(false)
  expect(existsSync(securityHoldFile(config))).toBe(true)

  const evidence = /evidence: (\S+\.tar\.zst)/.exec(res.stdout)![1]!
  expect(path.basename(evidence)).toMatch(/^evidence-\d{8}-\d{6}\.tar\.zst$/)
  expect(path.dirname(evidence)).toBe(config.backups.dir)
  // The archive's own checksum, then every file's against the manifest inside it.
  const sum = await runCommand(['sha256sum', '-c', `${path.basename(evidence)}.sha256`], {
    cwd: config.backups.dir
  })
  expect(sum.code).toBe(0)
  const out = mkdtempSync(path.join(tmpdir(), 'backout-evidence-'))
  try {
    expect((await runCommand(['tar', '--zstd', '-xf', evidence, '-C', out])).code).toBe(0)
    const check = await runCommand(['sha256sum', '-c', 'SHA256SUMS'], { cwd: out })
    expect(check.code).toBe(0)
    const listed = readFileSync(path.join(out, 'SHA256SUMS'), 'utf8')
    expect(listed).toMatch(/runtime-state\.json/)
    expect(listed).toMatch(/logs\/.*green\.log/)
    expect(listed).toMatch(/config\/.*upstream\.conf/)
    expect(listed).toMatch(/config\/.*backout\.yml/)
    const state = JSON.parse(readFileSync(path.join(out, 'runtime-state.json'), 'utf8')) as { active: string }
    expect(state.active).toBe('blue')
  } finally {
    rmSync(out, { recursive: true, force: true })
  }

  // Every rollback refuses (exit 2) while the hold is in place — even a dry run.
  for (const args of [
    ['rollback', '--level', '1', '--auto-confirm'],
    ['rollback', '--level', '3', '--dry-run']
  ]) {
    const refused = await runCli(['--config', sb.config, ...args])
    expect(refused.code).toBe(2)
    expect(refused.stderr).toMatch(
      /security hold: released only by `backout emergency release --reason \.\.\.`/
    )
  }
  expect((await service.runtime.state('blue')).running).toBe(false)

  expect((await runCli(['--config', sb.config, 'emergency', 'release'])).code).toBe(2) // --reason is required
  const released = await runCli([
    '--config',
    sb.config,
    'emergency',
    'release',
    '--reason',
    'security team approved'
  ])
  expect(released.code).toBe(0)
  expect(existsSync(securityHoldFile(config))).toBe(false)
  expect(readFileSync(path.join(config.state.dir, 'security-hold.log'), 'utf8')).toMatch(
    /security team approved/
  )
  const planned = await runCli(['--config', sb.config, 'rollback', '--level', '1', '--dry-run'])
  expect(planned.stderr).not.toMatch(/security hold/)
  expect((await runCli(['--config', sb.config, 'emergency', 'release', '--reason', 'again'])).code).toBe(2)
})
