import { runCli, startSandbox, whoServes } from '../support/cli'

test('two rollbacks at once: exactly one runs, the other exits 3 and changes nothing', async () => {
  const sb = await startSandbox()
  try {
    const [a, b] = await Promise.all([
      runCli(['--config', sb.config, 'rollback', '--quick', '--reason', 'a']),
      runCli(['--config', sb.config, 'rollback', '--quick', '--reason', 'b'])
    ])
    expect([a.code, b.code].sort()).toEqual([0, 3])
    const loser = a.code === 3 ? a : b
    expect(loser.stderr).toMatch(
      /another operation holds the lock for spacetime: rollback level 1 by PID \d+ on /
    )
    expect(new Set(await whoServes(sb.nginxUrl, 20))).toEqual(new Set(['blue']))
  } finally {
    await sb.down()
  }
})
