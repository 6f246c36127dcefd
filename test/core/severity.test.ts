import fc from 'fast-check'
import {
  aggregateSamples,
  classifySeverity,
  inconclusive,
  resolveThresholds,
  type Measurements,
  errorRateSampleSize,
  wilsonInterval,
  probeTimeoutMs,
  DEFAULT_THRESHOLDS
} from '../../src/core/severity'
import { UserError } from '../../src/core/errors'

/** A healthy baseline with enough traffic behind every rate. */
const healthy: Measurements = {
  serviceUp: true,
  errorRatePercent: 0.5,
  requestCount: 1000,
  p95Seconds: 0.2,
  latencySampleCount: 1000,
  dataCorruption: false,
  previousHealthy: true
}

const codes = (m: Measurements): string[] => classifySeverity(m).reasons.map(r => r.code)

describe('classifySeverity — the runbook cases', () => {
  it('service down → CRITICAL, roll back now, Level 1 when the previous environment is healthy', () => {
    const a = classifySeverity({ ...healthy, serviceUp: false })
    expect(a).toMatchObject({ severity: 'CRITICAL', shouldRollback: true, act: 'now', recommendedLevel: 1 })
    expect(a.reasons[0]).toMatchObject({ code: 'service_down', measured: false })
  })

  it('service down with the previous environment unhealthy or unknown → Level 2', () => {
    expect(classifySeverity({ ...healthy, serviceUp: false, previousHealthy: false }).recommendedLevel).toBe(
      2
    )
    const unknown = classifySeverity({ ...healthy, serviceUp: false, previousHealthy: undefined })
    expect(unknown.recommendedLevel).toBe(2)
    expect(unknown.levelWhy).toMatch(/not known to be healthy/)
  })

  it('12 % errors → HIGH, roll back (tree: > 10 %)', () => {
    const a = classifySeverity({ ...healthy, errorRatePercent: 12 })
    expect(a).toMatchObject({ severity: 'HIGH', shouldRollback: true, act: 'if not resolved in 5 min' })
    expect(a.recommendedLevel).toBe(1)
    expect(a.reasons[0]).toMatchObject({ code: 'error_rate_high', measured: 12, threshold: 10 })
  })

  it('55 % errors → CRITICAL, now', () => {
    const a = classifySeverity({ ...healthy, errorRatePercent: 55 })
    expect(a).toMatchObject({ severity: 'CRITICAL', shouldRollback: true, act: 'now' })
    expect(a.reasons[0]).toMatchObject({ code: 'error_rate_critical', threshold: 50 })
  })

  it('7 % errors → MEDIUM, no rollback yet, consider it in 15 min', () => {
    const a = classifySeverity({ ...healthy, errorRatePercent: 7 })
    expect(a).toMatchObject({ severity: 'MEDIUM', shouldRollback: false, act: 'in 15 min' })
  })

  it('p95 6 s → HIGH, roll back (tree: > 5 s)', () => {
    const a = classifySeverity({ ...healthy, p95Seconds: 6 })
    expect(a).toMatchObject({ severity: 'HIGH', shouldRollback: true })
    expect(a.reasons[0]).toMatchObject({ code: 'response_time_high', measured: 6, threshold: 5 })
  })

  it('p95 3 s → MEDIUM, no rollback', () => {
    expect(classifySeverity({ ...healthy, p95Seconds: 3 })).toMatchObject({
      severity: 'MEDIUM',
      shouldRollback: false
    })
  })

  it('data corruption → CRITICAL, now, Level 3 even with a healthy previous environment', () => {
    const a = classifySeverity({ ...healthy, dataCorruption: true })
    expect(a).toMatchObject({ severity: 'CRITICAL', shouldRollback: true, act: 'now', recommendedLevel: 3 })
    expect(a.levelWhy).toMatch(/Level 3/)
  })

  it('security breach → CRITICAL, Level 3', () => {
    const a = classifySeverity({ ...healthy, securityBreach: true })
    expect(a).toMatchObject({ severity: 'CRITICAL', shouldRollback: true, recommendedLevel: 3 })
    expect(a.reasons[0]?.message).toMatch(/isolate/)
  })

  it('database failure → CRITICAL, Level 2; with corruption too, Level 3', () => {
    const a = classifySeverity({ ...healthy, databaseFailure: true })
    expect(a).toMatchObject({ severity: 'CRITICAL', shouldRollback: true, recommendedLevel: 2 })
    expect(a.levelWhy).toMatch(/migrations/)
    expect(
      classifySeverity({ ...healthy, databaseFailure: true, dataCorruption: true }).recommendedLevel
    ).toBe(3)
  })

  it('failed health checks → HIGH, not a tree rollback: roll back if not resolved in 5 min', () => {
    const a = classifySeverity({ ...healthy, failedHealthChecks: 2 })
    expect(a).toMatchObject({ severity: 'HIGH', shouldRollback: false, act: 'if not resolved in 5 min' })
  })

  it('healthy → LOW, monitor, no level', () => {
    const a = classifySeverity({ ...healthy, failedHealthChecks: 0 })
    expect(a).toMatchObject({
      severity: 'LOW',
      shouldRollback: false,
      act: 'monitor',
      recommendedLevel: null
    })
    expect(a.reasons.every(r => r.severity === 'LOW')).toBe(true)
  })

  it('the worst finding wins and every finding is listed, worst first', () => {
    const a = classifySeverity({ ...healthy, errorRatePercent: 7, p95Seconds: 6, dataCorruption: true })
    expect(a.severity).toBe('CRITICAL')
    expect(a.reasons.map(r => r.code)).toEqual([
      'data_corruption',
      'response_time_high',
      'error_rate_medium',
      'service_up'
    ])
  })
})

describe('classifySeverity — boundaries: a threshold is crossed only when strictly exceeded', () => {
  it.each([
    [4.99, 'LOW', false],
    [5, 'LOW', false],
    [5.01, 'MEDIUM', false],
    [10, 'MEDIUM', false],
    [10.01, 'HIGH', true],
    [50, 'HIGH', true],
    [50.01, 'CRITICAL', true],
    [100, 'CRITICAL', true]
  ])('error rate %p %% → %s (rollback %p)', (rate, severity, rollback) => {
    expect(classifySeverity({ ...healthy, errorRatePercent: rate })).toMatchObject({
      severity,
      shouldRollback: rollback
    })
  })

  it.each([
    [2, 'LOW', false],
    [2.01, 'MEDIUM', false],
    [5, 'MEDIUM', false],
    [5.01, 'HIGH', true]
  ])('p95 %p s → %s (rollback %p)', (p95, severity, rollback) => {
    expect(classifySeverity({ ...healthy, p95Seconds: p95 })).toMatchObject({
      severity,
      shouldRollback: rollback
    })
  })

  it('thresholds are configurable and checked', () => {
    const strict = resolveThresholds({ errorRatePercent: { high: 2, medium: 1 } })
    expect(classifySeverity({ ...healthy, errorRatePercent: 3 }, strict)).toMatchObject({ severity: 'HIGH' })
    expect(() => resolveThresholds({ errorRatePercent: { high: 60 } })).toThrow(UserError)
    expect(() => resolveThresholds({ responseTimeSeconds: { medium: Number.NaN } })).toThrow(/ascending/)
    expect(() => resolveThresholds({ minRequests: -1 })).toThrow(/minRequests/)
  })
})

describe('classifySeverity — no data is not health', () => {
  it('no traffic: a rate over 0 requests is INCONCLUSIVE, not LOW', () => {
    const a = classifySeverity({ errorRatePercent: 0, requestCount: 0 })
    expect(a).toMatchObject({ severity: 'INCONCLUSIVE', shouldRollback: false, recommendedLevel: null })
    expect(a.reasons[0]).toMatchObject({ code: 'error_rate_inconclusive', measured: null })
    expect(a.reasons[0]?.message).toMatch(/only 0 requests/)
  })

  it('an empty query result is INCONCLUSIVE, not LOW', () => {
    const empty = inconclusive('the query returned no series')
    const a = classifySeverity({ errorRatePercent: empty, p95Seconds: empty })
    expect(a.severity).toBe('INCONCLUSIVE')
    expect(codes({ errorRatePercent: empty, p95Seconds: empty })).toEqual([
      'error_rate_inconclusive',
      'response_time_inconclusive'
    ])
  })

  it('NaN, a rate without its request count, and too few requests are inconclusive', () => {
    expect(classifySeverity({ errorRatePercent: Number.NaN, requestCount: 500 }).severity).toBe(
      'INCONCLUSIVE'
    )
    expect(classifySeverity({ errorRatePercent: 1 }).reasons[0]?.message).toMatch(/unknown/)
    expect(classifySeverity({ errorRatePercent: 60, requestCount: 19 }).severity).toBe('INCONCLUSIVE')
    expect(classifySeverity({ p95Seconds: 0.1, latencySampleCount: 3 }).severity).toBe('INCONCLUSIVE')
  })

  it('nothing measured at all is INCONCLUSIVE', () => {
    const a = classifySeverity({})
    expect(a.severity).toBe('INCONCLUSIVE')
    expect(a.reasons.map(r => r.code)).toEqual(['nothing_measured'])
  })

  it('good conclusive signals do not make a silent one healthy', () => {
    const a = classifySeverity({ ...healthy, p95Seconds: inconclusive('probe timed out') })
    expect(a.severity).toBe('INCONCLUSIVE')
    expect(a.reasons.map(r => r.code)).toContain('response_time_inconclusive')
  })

  it('a conclusive bad signal is acted on, and the inconclusive ones are listed too', () => {
    const a = classifySeverity({
      serviceUp: false,
      errorRatePercent: inconclusive('Prometheus unreachable'),
      previousHealthy: true
    })
    expect(a).toMatchObject({ severity: 'CRITICAL', shouldRollback: true, recommendedLevel: 1 })
    expect(a.reasons.map(r => r.code)).toEqual(['service_down', 'error_rate_inconclusive'])
    expect(a.reasons[1]?.message).toMatch(/Prometheus unreachable/)
  })

  it('property: any inconclusive reading with otherwise good signals is never LOW', () => {
    const field = fc.constantFrom<keyof Measurements>(
      'serviceUp',
      'errorRatePercent',
      'p95Seconds',
      'dataCorruption',
      'databaseFailure',
      'failedHealthChecks'
    )
    fc.assert(
      fc.property(field, fc.string(), (key, why) => {
        const m = { ...healthy, [key]: inconclusive(why) }
        expect(classifySeverity(m).severity).toBe('INCONCLUSIVE')
      })
    )
  })

  it('property: a higher error rate never lowers the severity', () => {
    const rank = { INCONCLUSIVE: 0, LOW: 1, MEDIUM: 2, HIGH: 3, CRITICAL: 4 }
    fc.assert(
      fc.property(
        fc.double({ min: 0, max: 100, noNaN: true }),
        fc.double({ min: 0, max: 100, noNaN: true }),
        (a, b) => {
          const [lo, hi] = a <= b ? [a, b] : [b, a]
          const s = (rate: number): number =>
            rank[classifySeverity({ ...healthy, errorRatePercent: rate }).severity]
          expect(s(hi)).toBeGreaterThanOrEqual(s(lo))
        }
      )
    )
  })
})

describe('aggregateSamples', () => {
  const opts = { minSamples: 3, failureLimit: 2 }

  it('one sample is not a verdict', () => {
    expect(aggregateSamples([true], opts)).toMatchObject({ verdict: 'inconclusive', passed: 1 })
    expect(aggregateSamples([], opts).verdict).toBe('inconclusive')
  })

  it('passes with enough conclusive samples below the failure limit', () => {
    expect(aggregateSamples([true, false, true], opts)).toMatchObject({
      verdict: 'pass',
      passed: 2,
      failed: 1
    })
  })

  it('fails as soon as the failure count reaches the limit', () => {
    expect(aggregateSamples([false, false], opts)).toMatchObject({ verdict: 'fail', failed: 2 })
  })

  it('inconclusive samples do not count towards the minimum', () => {
    const probeFailed = inconclusive('timeout')
    const v = aggregateSamples([true, probeFailed, probeFailed, true], opts)
    expect(v).toMatchObject({ verdict: 'inconclusive', inconclusive: 2 })
    expect(v.why).toMatch(/fewer than 3 conclusive/)
  })

  it('rejects nonsense options', () => {
    expect(() => aggregateSamples([true], { minSamples: 0, failureLimit: 1 })).toThrow(/minSamples/)
    expect(() => aggregateSamples([true], { minSamples: 1, failureLimit: 1.5 })).toThrow(/failureLimit/)
  })
})

describe('sample sizing and the error-rate interval', () => {
  it('sizes the sample to tell 5 % from 10 % at 95 % confidence: 427 requests', () => {
    expect(errorRateSampleSize(DEFAULT_THRESHOLDS, 0.95)).toBe(427)
    expect(errorRateSampleSize(DEFAULT_THRESHOLDS, 0.99)).toBeGreaterThan(427)
  })

  it('gives a Wilson interval that holds the rate and narrows with n', () => {
    const small = wilsonInterval(3, 40)
    const large = wilsonInterval(32, 427)
    expect(small.low).toBeLessThan(7.5)
    expect(small.high).toBeGreaterThan(7.5)
    expect(large.high - large.low).toBeLessThan(5.1)
    expect(large.low).toBeGreaterThan(5)
    expect(wilsonInterval(0, 0)).toEqual({ low: 0, high: 100, confidence: 0.95 })
  })

  it('puts the probe deadline above the highest latency threshold', () => {
    expect(probeTimeoutMs(DEFAULT_THRESHOLDS)).toBe(7500)
    expect(probeTimeoutMs(resolveThresholds({ responseTimeSeconds: { medium: 0.5, high: 1 } }))).toBe(3000)
  })
})
