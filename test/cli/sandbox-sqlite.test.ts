import { MemoryLogger } from '../../src/core/logger'
import { loadConfig } from '../../src/drivers/config-file'
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
