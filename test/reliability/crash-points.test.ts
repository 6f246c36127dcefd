import path from 'node:path'
import { existsSync, readFileSync } from 'node:fs'
import { isAlive, readPid } from '../../src/drivers/process'
import { runCli, startSandbox, whoServes } from '../support/cli'

/**
 * kill -9 at every step boundary of Level 1 (the test hook BACKOUT_TEST_CRASH_AFTER_STEP makes the process
 * kill itself right after step N), then run again: it converges to the target and the safety backup verifies.
 */
const LEVEL1_STEPS = 7
let crashPoints = 0
afterAll(() => {
  process.stdout.write(`crash points tried: ${crashPoints} (Level 1)\n`)
})

test.each(Array.from({ length: LEVEL1_STEPS - 1 }, (_, i) => i + 1))(
  'Level 1 killed after step %i converges on a second run',
  async n => {
    const sb = await startSandbox()
    try {
      const crashed = await runCli(['--config', sb.config, 'rollback', '--quick'], {
        env: { BACKOUT_TEST_CRASH_AFTER_STEP: String(n) }
      })
      expect(crashed.code).not.toBe(0) // killed by SIGKILL
      crashPoints++
      const again = await runCli(['--config', sb.config, '--json', 'rollback', '--quick'])
      expect(again.code).toBe(0)
      const record = JSON.parse(again.stdout) as {
        resumedFrom?: { id: string }
        safetyBackupId: string
        to: string
      }
      expect(record.resumedFrom).toBeDefined()
      expect(record.to).toBe('v2.4.9')
      expect(new Set(await whoServes(sb.nginxUrl, 20))).toEqual(new Set(['blue']))
      const green = readPid(path.join(sb.dir, 'run/green.pid'))
      expect(green === undefined || !isAlive(green)).toBe(true)
      expect((await runCli(['--config', sb.config, 'verify', '--quick', record.safetyBackupId])).code).toBe(0)
      expect(existsSync(path.join(sb.dir, 'state/spacetime.lock'))).toBe(false)
      const history = readFileSync(path.join(sb.dir, 'rollback_history.log'), 'utf8').trim().split('\n')
      expect(history.at(-1)).toMatch(/LEVEL=1 FROM=v2\.5\.0 TO=v2\.4\.9 .*STATUS=success/)
    } finally {
      await sb.down()
    }
  }
)
