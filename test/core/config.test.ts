import { parseConfig } from '../../src/core/config'
import { UserError } from '../../src/core/errors'
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
