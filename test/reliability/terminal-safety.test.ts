import { readFileSync, readdirSync } from 'node:fs'
import path from 'node:path'
import { LINE_BREAKS } from '../../src/core/sanitize'
import { runCli, startSandbox, type TestSandbox } from '../support/cli'

/**
 * Terminal safety (#18.9, #19.9): a --reason built to drive a terminal (ANSI/OSC escapes, C1 controls, a bidi
 * override) and to fake history entries (a quote, STATUS=success, newlines, CR, U+2028/U+2029, VT/FF/NEL) goes
 * through a real Level 1 and a real refusal. The terminal output, the run records, the history log, its report and
 * its Markdown carry none of it, and the report counts exactly the two runs with their real statuses.
 */
let sb: TestSandbox
beforeAll(async () => {
  sb = await startSandbox(['--db', 'sqlite'])
}, 120_000)
afterAll(async () => {
  await sb?.down()
})

const FAKE = '[2026-01-01 00:00:00] LEVEL=1 FROM=a TO=b DURATION=1 STATUS=success REASON="faked'
const EVIL =
  `bad" STATUS=success REASON="x` +
  ['\n', '\r', '\u2028', '\u2029', '\v', '\f', '\u0085', '\r\n'].map(sep => `${sep}${FAKE}`).join('') +
  '\x1b[2K\r\x1b]0;pwned\x07\x1b]8;;http://evil.test\x1b\\link\x1b]8;;\x1b\\\u009b31m\u202eevil'
// Everything that may not reach a terminal, a log or Markdown (tab and newline are the output's own).
const UNSAFE = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]/

test('a hostile --reason cannot spoof the history, its report, the log or the terminal', async () => {
  const cli = (...args: string[]): ReturnType<typeof runCli> => runCli(['--config', sb.config, ...args])
  const ok = await cli('rollback', '--quick', '--reason', EVIL)
  expect({ code: ok.code, err: ok.stderr.slice(-400) }).toMatchObject({ code: 0 })
  const refused = await cli(
    'rollback',
    '--level',
    '3',
    '--target',
    '20000101-000000',
    '--auto-confirm',
    '--reason',
    EVIL
  )
  expect(refused.code).toBe(2)
  const report = await cli('--json', 'history', '--report')
  const text = await cli('history', '--report')
  const plain = await cli('history')
  const md = await cli('history', '--format', 'markdown')
  for (const r of [ok, refused, report, text, plain, md]) {
    expect(r.stdout).not.toMatch(UNSAFE)
    expect(r.stderr).not.toMatch(UNSAFE)
  }
  expect(JSON.parse(report.stdout)).toMatchObject({
    total: 2,
    byStatus: { success: 1, refused: 1 },
    refused: 1,
    attempted: 1,
    successRatePercent: 100,
    unparsedLines: 0
  })
  expect(text.stdout).toContain('Rollbacks: 2 (1 refused, nothing changed)')
  // Whatever a reader takes for a line break, the log holds two lines, both in the runbook's format.
  const log = readFileSync(path.join(sb.dir, 'rollback_history.log'), 'utf8')
  expect(log).not.toMatch(UNSAFE)
  expect(log.split(LINE_BREAKS).filter(Boolean)).toHaveLength(2)
  expect(md.stdout.split('\n').filter(l => l.startsWith('| 2'))).toHaveLength(2)
  for (const f of readdirSync(path.join(sb.dir, 'state/runs')).filter(n => n.endsWith('.json')))
    expect(
      (JSON.parse(readFileSync(path.join(sb.dir, 'state/runs', f), 'utf8')) as { reason: string }).reason
    ).not.toMatch(UNSAFE)
}, 180_000)
