import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { stringify as stringifyYaml } from 'yaml'
import { parseConfig } from '../../src/core/config'
import { UserError } from '../../src/core/errors'
import { MemoryLogger } from '../../src/core/logger'
import { loadConfig } from '../../src/drivers/config-file'
import { createService } from '../../src/engine/service'
import { minimalConfig } from '../support/minimal-config'

const minimal = minimalConfig

test('the runbook defaults fill what the file leaves out', () => {
  const cfg = parseConfig(minimal, 'backout.yml')
  expect(cfg.thresholds.errorRatePercent).toEqual({ medium: 5, high: 10, critical: 50 })
  expect(cfg.thresholds.responseTimeSeconds).toEqual({ medium: 2, high: 5 })
  expect(cfg.thresholds.rtoMinutes).toEqual({ level1: 5, level2: 15, level3: 30 })
  expect(cfg.health.path).toBe('/health')
  expect(cfg.health.statusPath).toBe('/status')
  expect(cfg.stop.timeoutSeconds).toBe(30)
  expect(cfg.nginx.reload).toEqual(['nginx', '-s', 'reload'])
})

function errorOf(input: unknown): string {
  try {
    parseConfig(input, 'backout.yml')
  } catch (e) {
    expect(e).toBeInstanceOf(UserError)
    return (e as Error).message
  }
  throw new Error('expected a UserError')
}

test('each problem names the key, what was expected and what was found', () => {
  const msg = errorOf({
    ...minimal,
    runtime: 'kubernetes',
    targets: { ...minimal.targets, green: { ...minimal.targets.green, upstream: 'localhost' } },
    backups: { dir: 'b', keep: 0 },
    nginx: { ...minimal.nginx, reload: 'nginx -s reload' }
  })
  expect(msg).toContain('runtime: ')
  expect(msg).toContain('"kubernetes"')
  expect(msg).toContain('targets.green.upstream: expected host:port, like 127.0.0.1:8081 (got "localhost")')
  expect(msg).toContain('backups.keep')
  expect(msg).toContain('nginx.reload')
  expect(msg).toContain('docs/config.md')
})

test('unknown keys are refused (a typo never silently becomes a default)', () => {
  expect(errorOf({ ...minimal, thresholds: { errorRate: 3 } })).toMatch(
    /thresholds: Unrecognized key: "errorRate"/
  )
})

test('the runtime needs its section on both targets', () => {
  expect(errorOf({ ...minimal, runtime: 'compose' })).toContain('targets.blue.compose: runtime is compose')
})

test('blue and green must differ', () => {
  const t = minimal.targets
  expect(
    errorOf({ ...minimal, targets: { blue: t.blue, green: { ...t.green, upstream: t.blue.upstream } } })
  ).toContain('different upstream')
})

describe('${VAR} in every string value of backout.yml (#12.10)', () => {
  const env = {
    BO_VERSION: 'v9.9.9-from-env',
    BO_TOKEN: 's3cr3t-t0ken/with@chars',
    BO_TEST_FLAG: '-tq',
    BO_PATH_SUFFIX: 'status-from-env'
  }
  let dir = ''
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'backout-config-'))
    Object.assign(process.env, env)
  })
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true })
    for (const k of Object.keys(env)) delete process.env[k]
  })

  function write(doc: unknown): string {
    const file = path.join(dir, 'backout.yml')
    writeFileSync(file, stringifyYaml(doc))
    return file
  }

  test('lists, nested objects and plain keys are expanded; each value is masked in the logs', () => {
    const file = write({
      ...minimalConfig,
      targets: {
        blue: {
          ...minimalConfig.targets.blue,
          version: '${BO_VERSION}',
          process: {
            command: ['app', '--token=${BO_TOKEN}'],
            pidFile: 'blue.pid',
            env: { API_TOKEN: '${BO_TOKEN}' }
          }
        },
        green: minimalConfig.targets.green
      },
      nginx: { ...minimalConfig.nginx, test: ['nginx', '${BO_TEST_FLAG}'] },
      health: { statusPath: '/${BO_PATH_SUFFIX}' },
      configFiles: ['/etc/${BO_PATH_SUFFIX}.conf'],
      database: { kind: 'postgres', url: 'postgresql://app:${BO_TOKEN}@127.0.0.1:5432/app' }
    })
    const cfg = loadConfig(file)
    expect(cfg.targets.blue.version).toBe('v9.9.9-from-env')
    expect(cfg.targets.blue.process?.command).toEqual(['app', '--token=s3cr3t-t0ken/with@chars'])
    expect(cfg.targets.blue.process?.env).toEqual({ API_TOKEN: 's3cr3t-t0ken/with@chars' })
    expect(cfg.nginx.test).toEqual(['nginx', '-tq'])
    expect(cfg.health.statusPath).toBe('/status-from-env')
    expect(cfg.configFiles).toEqual(['/etc/status-from-env.conf'])
    // database.url: the value URL-encoded, so the password stays one password.
    expect(cfg.database?.kind === 'postgres' && new URL(cfg.database.url).password).toBe(
      encodeURIComponent(env.BO_TOKEN)
    )
    const log = new MemoryLogger()
    createService(cfg, log)
    log.info(`token ${env.BO_TOKEN} and version v9.9.9-from-env`)
    expect(log.lines.join('\n')).not.toContain(env.BO_TOKEN)
    expect(log.lines.join('\n')).not.toContain('v9.9.9-from-env')
    expect(log.lines.join('\n')).toContain('token *** and version ***')
  })

  test('an unset variable names the key where it is used', () => {
    const file = write({ ...minimalConfig, nginx: { ...minimalConfig.nginx, reload: ['${BO_UNSET_X}'] } })
    expect(() => loadConfig(file)).toThrow(
      /nginx\.reload\.0 uses \$\{BO_UNSET_X\}, but BO_UNSET_X is not set/
    )
  })
})
