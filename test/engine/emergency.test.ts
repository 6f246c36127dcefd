import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { MemoryLogger } from '../../src/core/logger'
import { loadConfig } from '../../src/drivers/config-file'
import { runCommand } from '../../src/drivers/exec'
import { pgQuery } from '../../src/drivers/database'
import { isAlive, readPid } from '../../src/drivers/process'
import { assess, listening } from '../../src/engine/assess'
import { dbCorruption, outageDiagnostics, securityHoldFile } from '../../src/engine/emergency'
import { dryRunLevel } from '../../src/engine/recommend'
import { rollback } from '../../src/engine/rollback'
import { isPostBreach } from '../../src/engine/security-hold'
import { createService, targetReady, type Service } from '../../src/engine/service'
import { takeSnapshot } from '../../src/engine/snapshot'
import { runCli, startSandbox, type TestSandbox } from '../support/cli'

/** The runbook's Emergency Procedures on one real sandbox (nginx, PostgreSQL, blue and the bad green), in order. */

jest.setTimeout(120_000)

let sb: TestSandbox
let service: Service
beforeAll(async () => {
  sb = await startSandbox(['--wal-archive'])
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
  expect(r.recommendation).toMatchObject({
    action: 'rollback',
    level: 1,
    commands: ['backout rollback --level 1']
  })
  expect(r.recommendation.checked).toEqual([expect.objectContaining({ level: 1, ok: true })])
  expect(readFileSync(path.join(sb.dir, 'nginx/upstream.conf'), 'utf8')).toBe(upstream)

  const cli = await runCli(['--config', sb.config, 'emergency', 'outage'])
  expect(cli.code).toBe(0)
  expect(cli.stdout).toMatch(/Recommended: Level 1/)
  expect(cli.stdout).toMatch(/checked: Level 1 plan passes/)
  expect(cli.stdout).toMatch(/green v2\.5\.0: STOPPED/)
})

test('outage with nginx down and blue healthy: start nginx (and that command starts it), then Level 1', async () => {
  const nginxPid = readPid(path.join(sb.dir, 'run/nginx.pid'))!
  process.kill(nginxPid, 'SIGQUIT')
  const address = new URL(sb.nginxUrl).host
  for (let i = 0; i < 100 && (await listening(address)); i++) await new Promise(r => setTimeout(r, 50))
  const r = await outageDiagnostics(service)
  expect(r.recommendation.action).toBe('start-nginx')
  expect(r.recommendation.commands[0]).toMatch(/^nginx -p \S+ -c \S+nginx\.conf$/)
  expect(r.recommendation.commands[1]).toBe('backout rollback --level 1')
  expect(r.recommendation.checked).toEqual([expect.objectContaining({ level: 1, ok: true })])
  expect((await runCommand(['bash', '-c', r.recommendation.commands[0]!])).code).toBe(0)
  for (let i = 0; i < 100 && !(await listening(address)); i++) await new Promise(r => setTimeout(r, 50))
  expect((await outageDiagnostics(service)).recommendation).toMatchObject({ action: 'rollback', level: 1 })
  // green back up for what follows
  await service.runtime.start('green')
  for (let i = 0; i < 100 && !(await targetReady(service.config, 'green')).ready; i++)
    await new Promise(r => setTimeout(r, 100))
})

test('db-corruption: every service stopped and an emergency snapshot; refused says what it already did; --to-time recovers to T', async () => {
  const url = (service.config.database as { url: string }).url
  const release = await takeSnapshot(service, { safety: false })
  for (let i = 0; i < 3; i++)
    await pgQuery(url, `INSERT INTO users (name, email) VALUES ('before ${i}', 'b${i}@t.test')`)
  await new Promise(r => setTimeout(r, 400))
  const T = new Date()
  await new Promise(r => setTimeout(r, 400))
  await pgQuery(url, `INSERT INTO users (name, email) VALUES ('after', 'after@t.test')`)
  writeFileSync(path.join(sb.dir, 'data/godot/corruption_detected'), 'x')
  expect((await service.runtime.state('blue')).running).toBe(true)
  expect((await service.runtime.state('green')).running).toBe(true)

  const refused = await dbCorruption(service, {
    confirm: () => Promise.resolve(false),
    reason: 'test: refused'
  })
  expect(refused.recovered).toBe(false)
  // The runbook's "docker-compose down": both targets, not only the live one.
  expect((await service.runtime.state('green')).running).toBe(false)
  expect((await service.runtime.state('blue')).running).toBe(false)
  expect(refused.message).toMatch(/^Level 3 was refused — Level 3 itself changed nothing/)
  expect(refused.message).toMatch(
    /this emergency already stopped blue \S+.*green \S+.* emergency snapshot \S+: the services stay STOPPED/
  )
  expect(service.store.get(refused.snapshotId).manifest.kind).toBe('safety')

  const cli = await runCli(['--config', sb.config, 'emergency', 'db-corruption', '--help'])
  expect(cli.stdout).toMatch(/--to-time <iso>/)

  const ok = await dbCorruption(service, {
    confirm: () => Promise.resolve(true),
    reason: 'test: corruption',
    target: release.id,
    toTime: T.toISOString()
  })
  expect(ok.level3.error).toBeUndefined()
  expect(ok.recovered).toBe(true)
  expect(ok.level3.record.level).toBe(3)
  expect(ok.level3.record.dataLoss).toMatchObject({ restoredTo: T.toISOString(), walReplayed: true })
  const names = (
    await pgQuery<{ name: string }>(
      url,
      "SELECT name FROM users WHERE name LIKE 'before%' OR name = 'after' ORDER BY id"
    )
  ).map(r => r.name)
  expect(names).toEqual(['before 0', 'before 1', 'before 2'])
  expect(existsSync(path.join(sb.dir, 'data/godot/corruption_detected'))).toBe(false)
  expect(service.store.get(ok.snapshotId).manifest.kind).toBe('safety')
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
    expect(['blue', 'green']).toContain(state.active)
    // nginx's own logs, the data dirs listed with hashes, and a database dump.
    expect(listed).toMatch(/logs\/nginx\/.*nginx-access\.log/)
    expect(listed).toMatch(/logs\/nginx\/.*nginx-error\.log/)
    expect(listed).toMatch(/database\/dump\.tar\.zst/)
    const world = path.join(sb.dir, 'data/godot/world.json')
    const worldSum = (await runCommand(['sha256sum', world])).stdout.split(' ')[0]!
    expect(readFileSync(path.join(out, 'data-listing.txt'), 'utf8')).toContain(`${worldSum}`)
    expect(readFileSync(path.join(out, 'nginx-T.txt'), 'utf8')).toMatch(/listen 127\.0\.0\.1:\d+/)
  } finally {
    rmSync(out, { recursive: true, force: true })
  }

  // The ports nginx really listens on, blocked with exact commands; the runbook's contact and plan steps.
  const port = new URL(sb.nginxUrl).port
  expect(res.stdout).toContain(`sudo iptables -I INPUT -p tcp --dport ${port} -j DROP`)
  expect(res.stdout).not.toMatch(/--dport (80|443) /)
  expect(res.stdout).toMatch(/Contact: Security team immediately/)
  expect(res.stdout).toMatch(/Follow: Security Incident Response Plan/)

  // A snapshot under the hold is post-breach: never a default recovery point; the recommendation names the
  // newest backup from before the breach and says not to restart.
  const before = service.store.list().find(b => b.manifest.kind === 'snapshot')!
  const under = await runCli(['--config', sb.config, '--json', 'snapshot'])
  expect(under.code).toBe(0)
  const underId = (JSON.parse(under.stdout) as { id: string; postBreach?: boolean }).id
  expect((JSON.parse(under.stdout) as { postBreach?: boolean }).postBreach).toBe(true)
  expect(isPostBreach(config, service.store.get(underId))).toBe(true)
  expect(isPostBreach(config, before)).toBe(false)
  const a = await assess(service, { rounds: 1, failureLimit: 1 })
  expect(a.recommendation).toMatchObject({ action: 'security-hold', level: 3 })
  expect(a.recommendation!.commands[1]).toBe(`backout rollback --level 3 --target ${before.id}`)
  expect(a.recommendation!.why).toMatch(/DO NOT RESTART/)
  expect((await outageDiagnostics(service)).recommendation.commands[1]).toBe(
    `backout rollback --level 3 --target ${before.id}`
  )

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
  // Released: Level 3's default recovery point is the pre-breach backup, not the one taken under the hold.
  const plan = await rollback(service, {
    level: 3,
    reason: 't',
    dryRun: true,
    confirm: () => Promise.resolve(true)
  })
  expect(plan.error).toBeUndefined()
  expect(plan.record.backupId).toBe(before.id)
  expect((await dryRunLevel(service, 3, before.id)).ok).toBe(true)
  expect((await runCli(['--config', sb.config, 'emergency', 'release', '--reason', 'again'])).code).toBe(2)
})
