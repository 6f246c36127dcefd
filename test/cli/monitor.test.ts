import { MemoryLogger } from '../../src/core/logger'
import { loadConfig } from '../../src/drivers/config-file'
import { createService, targetReady, type Service } from '../../src/engine/service'
import { runCli, startSandbox, type TestSandbox } from '../support/cli'

/** Starts the stopped target again, so that Level 1 can switch back to it. */
/**
 * The bad release deployed again: both targets running and green live, so the next Level 1 goes the same way as the
 * last one (v2.5.0 → v2.4.9) — a Level 1 back to the release just rolled away from is refused.
 */
async function startStopped(service: Service): Promise<void> {
  for (const color of ['blue', 'green'] as const) {
    await service.runtime.start(color)
    for (let i = 0; i < 100 && !(await targetReady(service.config, color)).ready; i++)
      await new Promise(r => setTimeout(r, 100))
  }
  await service.nginx.switchUpstream(service.config.targets.green.upstream, 'test: v2.5.0 deployed again')
}

/** The runbook's post-rollback monitoring on a real sandbox: a short configured window, a live line per reading. */

jest.setTimeout(120_000)

let sb: TestSandbox
beforeAll(async () => {
  sb = await startSandbox()
})
afterAll(async () => {
  await sb?.down()
})

test('after Level 1: live error rate and p95 lines for the configured window, then the pointer to incident', async () => {
  const res = await runCli([
    '--config',
    sb.config,
    'rollback',
    '--level',
    '1',
    '--auto-confirm',
    '--monitor-seconds',
    '4'
  ])
  expect(res.code).toBe(0)
  expect(res.stderr).toMatch(/post-rollback monitoring for 4 s \(--no-monitor skips it\)/)
  const lines = res.stderr.split('\n').filter(l => /monitoring \d+\/4 s:/.test(l))
  expect(lines.length).toBeGreaterThanOrEqual(2)
  for (const line of lines)
    expect(line).toMatch(
      /monitoring \d+\/4 s: error rate 0\.0 % \(95 % CI 0\.0–[\d.]+ %\), p95 \d+ ms over \d+ requests \(nginx\)$/
    )
  expect(res.stderr).toMatch(/monitored 4 s \(\d+ readings\): no sustained breach/)
  expect(res.stderr).toMatch(/next: backout incident --run \S+/)

  // --no-monitor skips it; without a terminal and no window given it is skipped and says how to have it.
  const service = createService(loadConfig(sb.config), new MemoryLogger())
  await startStopped(service)
  const back = await runCli([
    '--config',
    sb.config,
    'rollback',
    '--level',
    '1',
    '--auto-confirm',
    '--no-monitor'
  ])
  expect(back.code).toBe(0)
  expect(back.stderr).not.toMatch(/monitoring \d+\//)
  expect(back.stderr).toMatch(/next: backout incident/)
  await startStopped(service)
  const again = await runCli(['--config', sb.config, 'rollback', '--level', '1', '--auto-confirm'])
  expect(again.code).toBe(0)
  expect(again.stderr).toMatch(/post-rollback monitoring skipped: no terminal — pass --monitor-seconds N/)

  // `backout monitor` on its own fails on a sustained breach: green (30 % errors) is live again.
  await startStopped(service)
  const watch = await runCli(['--config', sb.config, 'monitor', '--seconds', '2', '--interval', '1'])
  expect(watch.code).toBe(1)
  expect(watch.stdout).toMatch(/monitoring FAILED at \d+ s: two readings in a row over the thresholds/)
})
