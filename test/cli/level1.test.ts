import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs'
import path from 'node:path'
import { hostname } from 'node:os'
import type { RunRecord } from '../../src/core/run-record'
import { readPid, isAlive } from '../../src/drivers/process'
import { runCli, startSandbox, whoServes, type TestSandbox } from '../support/cli'

let sb: TestSandbox
const upstreamOf = (): string => readFileSync(path.join(sb.dir, 'nginx/upstream.conf'), 'utf8')
const historyOf = (): string =>
  existsSync(path.join(sb.dir, 'rollback_history.log'))
    ? readFileSync(path.join(sb.dir, 'rollback_history.log'), 'utf8')
    : ''
const alive = (color: string): boolean => {
  const pid = readPid(path.join(sb.dir, 'run', `${color}.pid`))
  return pid !== undefined && isAlive(pid)
}

beforeEach(async () => {
  sb = await startSandbox()
})
afterEach(async () => {
  await sb.down()
})

test('Level 1 switches real nginx traffic from green to blue and stops green', async () => {
  expect(new Set(await whoServes(sb.nginxUrl, 10))).toEqual(new Set(['green']))

  const res = await runCli([
    '--config',
    sb.config,
    '--json',
    'rollback',
    '--level',
    '1',
    '--auto-confirm',
    '--reason',
    'crash'
  ])
  expect(res.code).toBe(0)
  const record = JSON.parse(res.stdout) as RunRecord
  expect(record.status).toBe('success')
  expect(record.steps.map(s => s.name)).toEqual([
    'Assess situation',
    'Verify previous environment',
    'Safety backup',
    'Switch traffic',
    'Verify health',
    'Stop failed environment',
    'Final validation'
  ])

  // Every response through nginx now comes from blue, and green no longer runs.
  expect(new Set(await whoServes(sb.nginxUrl, 50))).toEqual(new Set(['blue']))
  expect(alive('green')).toBe(false)
  expect(alive('blue')).toBe(true)

  // One history line in the runbook's format, and a verified safety backup.
  expect(historyOf()).toMatch(
    /^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] LEVEL=1 FROM=v2\.5\.0 TO=v2\.4\.9 DURATION=\d+ STATUS=success REASON="crash"\n$/
  )
  const verify = await runCli(['--config', sb.config, 'verify', record.safetyBackupId!])
  expect(verify.code).toBe(0)
  expect(readFileSync(path.join(sb.dir, 'state/last_safety_backup'), 'utf8')).toContain(
    record.safetyBackupId!
  )
})

test('--dry-run prints the plan and changes nothing', async () => {
  const before = upstreamOf()
  const res = await runCli(['--config', sb.config, 'rollback', '--level', '1', '--dry-run'])
  expect(res.code).toBe(0)
  expect(res.stdout).toContain('Switch traffic')
  expect(res.stdout).toContain('(plan)')
  expect(upstreamOf()).toBe(before)
  expect(alive('green')).toBe(true)
  expect(historyOf()).toBe('')
  expect(new Set(await whoServes(sb.nginxUrl, 10))).toEqual(new Set(['green']))
})

test('a held lock exits 3 and changes nothing', async () => {
  mkdirSync(path.join(sb.dir, 'state'), { recursive: true })
  const holder = {
    host: hostname(),
    pid: process.pid,
    startedAt: new Date().toISOString(),
    operation: 'rollback level 2'
  }
  writeFileSync(path.join(sb.dir, 'state/spacetime.lock'), JSON.stringify(holder))
  const before = upstreamOf()
  const res = await runCli(['--config', sb.config, 'rollback', '--quick'])
  expect(res.code).toBe(3)
  expect(res.stderr).toContain(`PID ${process.pid}`)
  expect(upstreamOf()).toBe(before)
  expect(alive('green')).toBe(true)
})

test('a stale lock (its process is gone) is taken over', async () => {
  mkdirSync(path.join(sb.dir, 'state'), { recursive: true })
  const holder = {
    host: hostname(),
    pid: 2 ** 22 + 12345,
    startedAt: new Date(0).toISOString(),
    operation: 'rollback level 1'
  }
  writeFileSync(path.join(sb.dir, 'state/spacetime.lock'), JSON.stringify(holder))
  const res = await runCli(['--config', sb.config, 'rollback', '--quick'])
  expect(res.code).toBe(0)
  expect(res.stderr).toContain('took over a stale lock')
  expect(existsSync(path.join(sb.dir, 'state/spacetime.lock'))).toBe(false)
})

test('a bad config exits 2 naming the key, and changes nothing', async () => {
  const bad = path.join(sb.dir, 'bad.yml')
  writeFileSync(
    bad,
    readFileSync(sb.config, 'utf8').replace(/upstream: 127\.0\.0\.1:(\d+)/, 'upstream: nowhere')
  )
  const before = upstreamOf()
  const res = await runCli(['--config', bad, 'rollback', '--quick'])
  expect(res.code).toBe(2)
  expect(res.stderr).toContain('targets.blue.upstream: expected host:port')
  expect(res.stderr).toContain('docs/config.md')
  expect(upstreamOf()).toBe(before)
  expect(alive('green')).toBe(true)
})

test('an unhealthy blue makes Level 1 refuse (exit 2) and recommend Level 2', async () => {
  process.kill(readPid(path.join(sb.dir, 'run/blue.pid'))!, 'SIGKILL')
  const before = upstreamOf()
  const res = await runCli(['--config', sb.config, 'rollback', '--quick'])
  expect(res.code).toBe(2)
  expect(res.stderr).toMatch(/escalate to Level 2/)
  expect(upstreamOf()).toBe(before)
  expect(new Set(await whoServes(sb.nginxUrl, 5))).toEqual(new Set(['green']))
})

test('without a terminal and without --auto-confirm, it refuses', async () => {
  const res = await runCli(['--config', sb.config, 'rollback', '--level', '1'])
  expect(res.code).toBe(2)
  expect(res.stderr).toContain('--auto-confirm')
  expect(alive('green')).toBe(true)
})
