import {
  appendFileSync,
  closeSync,
  mkdirSync,
  openSync,
  readFileSync,
  statfsSync,
  writeFileSync,
  writeSync,
  rmSync
} from 'node:fs'
import path from 'node:path'
import { historyReport } from '../../src/core/history'
import { runCommand } from '../../src/drivers/exec'
import { runCli, startSandbox, type TestSandbox } from '../support/cli'

/**
 * History writes are atomic (#18.8): the history log on a small tmpfs that is full, but for a few bytes at the end of
 * the log's last page. A Level 1 that succeeds exits 0 with a warning that its history line could not be written,
 * and the log is left byte for byte as it was (no half line). With room again, the next entry is a line of its own —
 * even after a half line left by an older version. (mount needs root; outside CI the test says so and checks
 * nothing when mount is refused; under CI=true that fails the suite.)
 */
let sb: TestSandbox | undefined
let mnt = ''
let mounted = false
let skipped = ''
const LINE = (n: number, reason: string): string =>
  `[2026-01-0${n} 10:00:00] LEVEL=1 FROM=v2 TO=v1 DURATION=10 STATUS=success REASON="${reason}"\n`

beforeAll(async () => {
  sb = await startSandbox(['--db', 'sqlite'])
  mnt = path.join(sb.dir, 'small-history')
  mkdirSync(mnt)
  const res = await runCommand(['mount', '-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt])
  if (res.code !== 0) {
    skipped = `cannot mount a tmpfs (${res.stderr.trim() || `exit ${res.code}`}): run as root to test a full disk`
    if (process.env.CI === 'true') throw new Error(skipped)
    return
  }
  mounted = true
  const config = readFileSync(sb.config, 'utf8')
  if (!/^ {2}log: rollback_history\.log$/m.test(config))
    throw new Error(`history.log not found in ${sb.config}`)
  writeFileSync(
    sb.config,
    config.replace(/^ {2}log: rollback_history\.log$/m, `  log: ${mnt}/rollback_history.log`)
  )
}, 120_000)

afterAll(async () => {
  try {
    if (mounted) await runCommand(['umount', '-l', mnt])
  } finally {
    await sb?.down()
  }
})

const log = (): string => path.join(mnt, 'rollback_history.log')
const filler = (): string => path.join(mnt, 'filler')

/** Fills the filesystem to the last byte. */
function fill(): void {
  const fd = openSync(filler(), 'a')
  const chunk = Buffer.alloc(4096)
  try {
    for (;;) {
      const s = statfsSync(mnt)
      if (s.bavail <= 0) break
      writeSync(fd, chunk)
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e
  } finally {
    closeSync(fd)
  }
}

test('a full disk after a successful Level 1: exit 0, a warning, and not half a line in the history', async () => {
  if (skipped) return void process.stdout.write(`history disk-full test skipped: ${skipped}\n`)
  // Two entries, the second padded so that the log ends 60 bytes short of a page: the next line fits only in part.
  const first = LINE(1, 'first')
  const pad = 4096 - 60 - first.length - LINE(2, '').length
  writeFileSync(log(), first + LINE(2, 'x'.repeat(pad)))
  expect(readFileSync(log()).length).toBe(4096 - 60)
  fill()
  const before = readFileSync(log())
  const res = await runCli(['--config', sb!.config, 'rollback', '--quick', '--reason', 'disk full'])
  process.stdout.write(
    `Level 1 on a full history disk: exit ${res.code}: ${res.stderr.trim().split('\n').slice(-2).join(' | ')}\n`
  )
  expect({ code: res.code, err: res.stderr.slice(-600) }).toMatchObject({ code: 0 })
  expect(res.stderr).toMatch(
    /the run succeeded, but its record could not be written: history line in .*rollback_history\.log/
  )
  expect(readFileSync(log()).equals(before)).toBe(true)

  // Room again, and a half line left behind by an older version: the next entry starts a line of its own.
  rmSync(filler())
  appendFileSync(log(), '[2026-01-03 10:00:00] LEVEL=1 FROM=v2 TO=v1 DURA')
  // (green was stopped by the first Level 1, so this one is refused — a refusal is recorded all the same.)
  const again = await runCli(['--config', sb!.config, 'rollback', '--quick', '--reason', 'room again'])
  expect([0, 2]).toContain(again.code)
  const lines = readFileSync(log(), 'utf8').split('\n').filter(Boolean)
  const r = historyReport(lines)
  expect(r.total).toBe(3)
  expect(r.unparsedLines).toBe(1)
  expect(lines.at(-1)).toMatch(
    /^\[\d{4}-\d\d-\d\d [\d:]{8}\] LEVEL=1 .* STATUS=(success|refused) REASON="room again/
  )
}, 180_000)
