import { existsSync } from 'node:fs'
import path from 'node:path'
import { parseConfig, type Config } from '../../src/core/config'
import { OperationError, UserError } from '../../src/core/errors'
import { createRuntime } from '../../src/drivers/runtime'
import { createSystemdRuntime, type SystemdRuntime } from '../../src/drivers/systemd'
import { describeWith } from '../support/real-system'
import { startDockerEngine, type DockerEngine } from '../support/docker-engine'
import { freePort } from '../support/ports'
import {
  hasSystemdContainer,
  imageTarball,
  noSystemdReason,
  startSystemdContainer,
  type SystemdContainer
} from '../support/systemd-container'

/**
 * The systemd runtime against a real systemd: PID 1 of a container booted from a Debian rootfs built here
 * with debootstrap (test/support/systemd-container.ts). backout drives it through the `exec` prefix
 * (`docker exec <ctr>`), the way it would drive a remote host through `ssh`.
 */

const maybe = describeWith(hasSystemdContainer ? '' : noSystemdReason, 'systemd runtime tests')

function makeConfig(
  exec: string[],
  ports: { blue: number; green: number },
  units: { blue: string; green: string } = {
    blue: 'vbrpg-backend-blue.service',
    green: 'vbrpg-backend-green.service'
  }
): Config {
  const root = '/nonexistent/backout-systemd-test'
  return parseConfig(
    {
      service: 'vbrpg',
      runtime: 'systemd',
      targets: {
        blue: {
          version: 'v1',
          upstream: `127.0.0.1:${ports.blue}`,
          systemd: { unit: units.blue, gitDir: '/srv/vbrpg-blue', exec }
        },
        green: {
          version: 'v2',
          upstream: `127.0.0.1:${ports.green}`,
          systemd: { unit: units.green, gitDir: '/srv/vbrpg-green', exec }
        }
      },
      nginx: { upstreamFile: path.join(root, 'upstream.conf'), url: 'http://127.0.0.1:1/' },
      backups: { dir: path.join(root, 'backups') },
      state: { dir: path.join(root, 'state') }
    },
    'systemd.test'
  )
}

async function health(port: number): Promise<Record<string, unknown>> {
  let last: unknown
  for (let i = 0; i < 20; i++) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(2000) })
      if (res.status === 200) return JSON.parse(await res.text()) as Record<string, unknown>
      last = new Error(`status ${res.status}`)
    } catch (e) {
      last = e
    }
    await new Promise(r => setTimeout(r, 100))
  }
  throw last
}

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p
  } catch (e) {
    if (e instanceof Error) return e
    throw new Error(`rejected with a non-Error: ${String(e)}`)
  }
  throw new Error('expected a rejection, got a result')
}

maybe('systemd runtime (real systemd in a container)', () => {
  let engine: DockerEngine | undefined
  let ctr: SystemdContainer
  let runtime: SystemdRuntime
  let ports: { blue: number; green: number }
  const commits: Record<'v1' | 'v2', string> = { v1: '', v2: '' }

  const inCtr = async (...argv: string[]): Promise<string> => {
    const r = await ctr.run(argv)
    if (r.code !== 0) throw new Error(`${argv.join(' ')} exited ${r.code}: ${r.stderr}`)
    return r.stdout.trim()
  }

  beforeAll(async () => {
    const built = !existsSync(imageTarball)
    engine = await startDockerEngine()
    ports = { blue: await freePort(), green: await freePort() }
    ctr = await startSystemdContainer(engine, ports, line => console.log(line))
    const t = ctr.timings
    console.log(
      `systemd container: ${built ? `rootfs built in ${((t.buildMs ?? 0) / 1000).toFixed(0)}s, ` : 'rootfs from cache, '}` +
        `import ${(t.importMs / 1000).toFixed(1)}s, boot ${(t.bootMs / 1000).toFixed(1)}s, setup ${(t.setupMs / 1000).toFixed(1)}s`
    )
    runtime = createSystemdRuntime(makeConfig(ctr.exec, ports), { pollMs: 100 })
    commits.v1 = await inCtr('git', '-C', '/srv/vbrpg-blue', 'rev-parse', 'v1^{commit}')
    commits.v2 = await inCtr('git', '-C', '/srv/vbrpg-blue', 'rev-parse', 'v2^{commit}')
  }, 15 * 60000)

  afterAll(async () => {
    await ctr?.stop()
    await engine?.stop()
  }, 120000)

  it('is what createRuntime gives for runtime: systemd', () => {
    expect(createRuntime(makeConfig(ctr.exec, ports), '/nonexistent').kind).toBe('systemd')
  })

  it('reports an installed unit that is not running as stopped, and a missing one as not found', async () => {
    await expect(runtime.state('blue')).resolves.toEqual({ running: false, detail: 'inactive (dead)' })
    const missing = createSystemdRuntime(
      makeConfig(ctr.exec, ports, { blue: 'nope.service', green: 'x.service' })
    )
    await expect(missing.state('blue')).resolves.toEqual({
      running: false,
      detail: 'unit nope.service not found'
    })
    const e = await rejection(missing.start('blue'))
    expect(e).toBeInstanceOf(UserError)
    expect(e.message).toMatch(
      /targets\.blue\.systemd\.unit: nope\.service is not installed \(through .*docker.* exec/
    )
  })

  it('starts a unit and waits until it is active; the service answers', async () => {
    const started = await runtime.start('blue')
    expect(started).toMatch(/^started: active \(running\) pid \d+ since /)
    const state = await runtime.state('blue')
    expect(state.running).toBe(true)
    expect(state.detail).toMatch(/^active \(running\) pid \d+ since /)
    expect(await inCtr('systemctl', 'is-active', 'vbrpg-backend-blue.service')).toBe('active')
    expect(await health(ports.blue)).toEqual({ status: 'healthy', version: 'v2' })
    expect(await runtime.start('blue')).toMatch(/^already running: active \(running\) pid \d+/)
  })

  it("reads the unit's journal", async () => {
    const lines = await runtime.journal('blue', 20)
    expect(lines.length).toBeGreaterThan(0)
    expect(lines.length).toBeLessThanOrEqual(20)
    expect(lines.join('\n')).toMatch(/Started vbrpg-backend-blue\.service/)
    expect(lines.join('\n')).toMatch(/"GET \/health HTTP\/1\.1" 200/)
    expect(await runtime.journal('blue', 1)).toHaveLength(1)
    expect(await runtime.journal('green', 5)).toEqual([]) // never started
  })

  it('stops a unit gracefully well within the timeout and says how it ended', async () => {
    const t = Date.now()
    const outcome = await runtime.stop('blue', 10000)
    const elapsed = Date.now() - t
    expect(outcome).toMatch(/^stopped in \d+\.\ds$/)
    expect(elapsed).toBeLessThan(10000)
    await expect(runtime.state('blue')).resolves.toEqual({ running: false, detail: 'inactive (dead)' })
    expect(
      await inCtr('systemctl', 'show', '-p', 'ActiveState', '--value', 'vbrpg-backend-blue.service')
    ).toBe('inactive')
    expect(await runtime.stop('blue', 10000)).toBe('already stopped: inactive (dead)')
    expect((await runtime.journal('blue', 5)).join('\n')).toMatch(/Stopped vbrpg-backend-blue\.service/)
  })

  it('kills a unit that ignores SIGTERM when our timeout runs out, before its own TimeoutStopSec', async () => {
    const stubborn = createSystemdRuntime(
      makeConfig(ctr.exec, ports, { blue: 'vbrpg-backend-blue.service', green: 'vbrpg-stubborn.service' }),
      { pollMs: 100, settleMs: 300 }
    )
    await stubborn.start('green')
    const t = Date.now()
    const outcome = await stubborn.stop('green', 2000)
    const elapsed = Date.now() - t
    expect(outcome).toBe('did not stop in 2.0s: killed (SIGKILL)')
    expect(elapsed).toBeGreaterThanOrEqual(2000)
    expect(elapsed).toBeLessThan(8000) // the unit's own TimeoutStopSec is 120 s
    const state = await stubborn.state('green')
    expect(state.running).toBe(false)
    expect(state.detail).toMatch(/^failed \(failed\), result signal$/)
  })

  it('fails a start whose service dies at once, with its journal', async () => {
    const broken = createSystemdRuntime(
      makeConfig(ctr.exec, ports, { blue: 'vbrpg-backend-blue.service', green: 'vbrpg-broken.service' }),
      { pollMs: 100 }
    )
    const e = await rejection(broken.start('green'))
    expect(e).toBeInstanceOf(OperationError)
    expect(e.message).toMatch(/vbrpg-broken\.service/)
    expect(e.message).toMatch(/boom: cannot open data\/vbrpg\.db/)
    expect((await broken.state('green')).running).toBe(false)
  })

  it('reads the commit a checkout is on', async () => {
    await expect(runtime.gitCommit('blue')).resolves.toBe(commits.v2)
    await expect(runtime.gitCommit('green')).resolves.toBe(commits.v2)
    // What snapshot writes to images.txt: the commit is the pin Level 2 checks out again.
    await expect(runtime.images('blue')).resolves.toEqual([
      { service: 'vbrpg-backend-blue.service', image: '/srv/vbrpg-blue', pin: commits.v2 }
    ])
    const config = makeConfig(ctr.exec, ports)
    delete config.targets.blue.systemd?.gitDir
    const noGit = createSystemdRuntime(config)
    await expect(noGit.images('blue')).resolves.toEqual([])
    await expect(noGit.gitCommit('blue')).rejects.toThrow(/targets\.blue\.systemd\.gitDir is not set/)
  })

  it('refuses to check out while the unit runs', async () => {
    await runtime.start('blue')
    try {
      const e = await rejection(runtime.checkout('blue', 'v1'))
      expect(e).toBeInstanceOf(UserError)
      expect(e.message).toMatch(/vbrpg-backend-blue\.service is active \(running\).* — stop it first/)
      await expect(runtime.gitCommit('blue')).resolves.toBe(commits.v2)
      // A pre-flight may check the commit while the unit still runs.
      await expect(runtime.verifyCheckout('blue', 'v1')).resolves.toEqual({
        from: commits.v2,
        to: commits.v1
      })
    } finally {
      await runtime.stop('blue', 10000)
    }
  })

  it('refuses a dirty work tree, an unknown commit and a revision that looks like an option — changing nothing', async () => {
    const r = await ctr.run(['tee', '/srv/vbrpg-blue/health'], '{"status":"healthy","version":"hotfix"}\n')
    expect(r.code).toBe(0)
    try {
      const e = await rejection(runtime.checkout('blue', 'v1'))
      expect(e).toBeInstanceOf(UserError)
      expect((e as UserError).reasonCode).toBe('dirty_worktree')
      expect(e.message).toMatch(
        /\/srv\/vbrpg-blue has uncommitted changes \(1: M health\) — commit or stash them/
      )
      expect(await inCtr('cat', '/srv/vbrpg-blue/health')).toMatch(/hotfix/)
      await expect(runtime.verifyCheckout('blue', 'v1')).rejects.toThrow(/has uncommitted changes/)
    } finally {
      await inCtr('git', '-C', '/srv/vbrpg-blue', 'checkout', '--', 'health')
    }
    // An untracked file (a database, a log) is not a reason to refuse.
    await inCtr('touch', '/srv/vbrpg-blue/untracked.db')

    // The same checks for a pre-flight while the unit runs, changing nothing.
    await expect(runtime.verifyCheckout('blue', 'v1')).resolves.toEqual({ from: commits.v2, to: commits.v1 })
    await expect(runtime.verifyCheckout('blue', 'deadbeefdeadbeef')).rejects.toThrow(/is not a commit in/)

    const unknown = await rejection(runtime.checkout('blue', 'deadbeefdeadbeef'))
    expect(unknown).toBeInstanceOf(UserError)
    expect((unknown as UserError).reasonCode).toBe('unknown_commit')
    expect(unknown.message).toMatch(/deadbeefdeadbeef is not a commit in \/srv\/vbrpg-blue .* fetch it first/)

    const option = await rejection(runtime.checkout('blue', '--orphan=x'))
    expect(option).toBeInstanceOf(UserError)
    expect((option as UserError).reasonCode).toBe('bad_commit')
    await expect(runtime.gitCommit('blue')).resolves.toBe(commits.v2)
  })

  it('checks out the recorded commit; started again, the unit serves that version', async () => {
    const result = await runtime.checkout('blue', commits.v1)
    expect(result).toEqual({
      from: commits.v2,
      to: commits.v1,
      detail: `/srv/vbrpg-blue: ${commits.v2.slice(0, 12)} → ${commits.v1.slice(0, 12)}`
    })
    await expect(runtime.gitCommit('blue')).resolves.toBe(commits.v1)
    expect(await inCtr('cat', '/srv/vbrpg-blue/VERSION')).toBe('v1')
    expect(await inCtr('ls', '/srv/vbrpg-blue/untracked.db')).toBe('/srv/vbrpg-blue/untracked.db')

    await runtime.start('blue')
    expect(await health(ports.blue)).toEqual({ status: 'healthy', version: 'v1' })
    await runtime.stop('blue', 10000)

    // By tag, and back again; the same commit twice changes nothing.
    await expect(runtime.checkout('blue', 'v2')).resolves.toMatchObject({ from: commits.v1, to: commits.v2 })
    await expect(runtime.checkout('blue', 'v2')).resolves.toMatchObject({
      from: commits.v2,
      to: commits.v2,
      detail: `/srv/vbrpg-blue already at ${commits.v2.slice(0, 12)}`
    })
    await runtime.start('blue')
    expect(await health(ports.blue)).toEqual({ status: 'healthy', version: 'v2' })
    await runtime.stop('blue', 10000)
  })
})
