import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import type { Config } from '../../src/core/config'
import { UserError } from '../../src/core/errors'
import { createProcessRuntime } from '../../src/drivers/runtime'
import { stopByPidFile } from '../../src/drivers/process'

/** What the kernel says the process was started with: /proc/<pid>/environ. */
function environOf(pid: number): Record<string, string> {
  const raw = readFileSync(`/proc/${pid}/environ`, 'utf8')
  return Object.fromEntries(
    raw
      .split('\0')
      .filter(Boolean)
      .map(kv => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])
  )
}

const RUNNER_ENV = {
  INPUT_ENV: 'DB_PASSWORD=hunter2-secret\nBACKOUT_SEAL_KEY=0123456789abcdef0123456789abcdef',
  INPUT_TOKEN: 'ghs_jobtoken_SECRET',
  ACTIONS_RUNTIME_TOKEN: 'runtime-token-SECRET',
  ACTIONS_ID_TOKEN_REQUEST_TOKEN: 'oidc-SECRET',
  RUNNER_TRACKING_ID: 'github_0f4b7d4e-tracking',
  GITHUB_TOKEN: 'ghs_other_SECRET',
  DB_PASSWORD: 'hunter2-secret'
}

let dir: string
const saved: Record<string, string | undefined> = {}
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'backout-procenv-'))
  for (const [k, v] of Object.entries(RUNNER_ENV)) {
    saved[k] = process.env[k]
    process.env[k] = v
  }
})
afterEach(async () => {
  await stopByPidFile(path.join(dir, 'blue.pid'), 2000)
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k]
    else process.env[k] = v
  }
  rmSync(dir, { recursive: true, force: true })
})

const config = (env: Record<string, string>): Config =>
  ({
    service: 'app',
    targets: {
      blue: {
        process: {
          command: ['/bin/sleep', '30'],
          cwd: dir,
          env,
          pidFile: path.join(dir, 'blue.pid'),
          logFile: path.join(dir, 'blue.log')
        }
      },
      green: {}
    }
  }) as unknown as Config

test('a service started by the process runtime gets its own env and a minimal base — never the runner environment', async () => {
  const runtime = createProcessRuntime(
    config({ DATABASE_URL: 'postgres://app:${DB_PASSWORD}@db/app', MODE: 'prod' }),
    dir
  )
  const started = await runtime.start('blue')
  const pid = Number(/pid (\d+)/.exec(started)![1])
  const env = environOf(pid)
  // ${VAR} expanded from backout's environment (the env input), verbatim (no URL encoding)
  expect(env.DATABASE_URL).toBe('postgres://app:hunter2-secret@db/app')
  expect(env.MODE).toBe('prod')
  expect(env.PATH).toBe(process.env.PATH)
  for (const name of Object.keys(RUNNER_ENV)) expect(env).not.toHaveProperty(name)
  expect(Object.keys(env).filter(k => /^(INPUT_|ACTIONS_|RUNNER_|GITHUB_)/.test(k))).toEqual([])
  expect(Object.values(env).join('\n')).not.toContain('SECRET')
})

test('a ${VAR} that is not set is refused before anything starts, naming the key', async () => {
  const runtime = createProcessRuntime(config({ TOKEN: '${NOT_SET_ANYWHERE}' }), dir)
  await expect(runtime.start('blue')).rejects.toThrow(UserError)
  await expect(runtime.start('blue')).rejects.toThrow(
    /targets\.blue\.process\.env\.TOKEN uses \$\{NOT_SET_ANYWHERE\}/
  )
})
