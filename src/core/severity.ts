import { UserError } from './errors'

/**
 * The runbook's "Rollback Decision Tree" and "Severity Classification", as one pure function.
 *
 * Whether to roll back follows the tree: the service is down, the error rate is above 10 %, the response
 * time is above 5 s or data is corrupt → roll back; otherwise monitor. The table's CRITICAL items the tree
 * does not name (security breach, database failure) say "rollback immediately" too, so they roll back.
 * How urgently follows the table: CRITICAL now, HIGH if not resolved in 5 minutes, MEDIUM in 15 minutes,
 * LOW monitor.
 *
 * Boundaries: a threshold is crossed only when the value is strictly above it, as in the tree's "> 10%" and
 * "> 5s". So exactly 10 % is MEDIUM (no rollback), exactly 50 % is HIGH, exactly 5 % is LOW, exactly 5 s is
 * MEDIUM and exactly 2 s is LOW.
 *
 * No data is not health: a reading that is inconclusive, not a number, or backed by fewer samples than the
 * configured minimum never counts as 0 % or as fine.
 */

export type Severity = 'CRITICAL' | 'HIGH' | 'MEDIUM' | 'LOW' | 'INCONCLUSIVE'
export type RollbackLevel = 1 | 2 | 3
export type Act = 'now' | 'if not resolved in 5 min' | 'in 15 min' | 'monitor'

/** A probe that ran and gave no usable answer (nothing returned, failed, too few samples), and why. */
export interface Inconclusive {
  readonly status: 'inconclusive'
  readonly why: string
}

/** A measured value, or the reason there is none. */
export type Reading<T> = T | Inconclusive

export function inconclusive(why: string): Inconclusive {
  return { status: 'inconclusive', why }
}

export function isInconclusive(value: unknown): value is Inconclusive {
  return (
    typeof value === 'object' && value !== null && (value as { status?: unknown }).status === 'inconclusive'
  )
}

/** What was measured. A field left out was not measured; it is neither good nor bad. */
export interface Measurements {
  serviceUp?: Reading<boolean>
  errorRatePercent?: Reading<number>
  /** Requests behind errorRatePercent; fewer than `minRequests` (or unknown) makes the rate inconclusive. */
  requestCount?: number
  /** The error rate's confidence interval, % (low, high), shown beside the rate. */
  errorRateInterval?: { low: number; high: number; confidence: number }
  p95Seconds?: Reading<number>
  /** Observations behind p95Seconds; fewer than `minLatencySamples` (or unknown) makes it inconclusive. */
  latencySampleCount?: number
  dataCorruption?: Reading<boolean>
  securityBreach?: Reading<boolean>
  databaseFailure?: Reading<boolean>
  /** How many health checks failed (0 = all passed). */
  failedHealthChecks?: Reading<number>
  /** Whether the previous environment is known healthy: decides Level 1 (switch back) over Level 2. */
  previousHealthy?: boolean
}

export interface SeverityThresholds {
  errorRatePercent: { medium: number; high: number; critical: number }
  responseTimeSeconds: { medium: number; high: number }
  /** Fewest requests an error rate may rest on. Not from the runbook: a rate of a handful means little. */
  minRequests: number
  /** Fewest latency observations a p95 may rest on. */
  minLatencySamples: number
}

export const DEFAULT_THRESHOLDS: SeverityThresholds = {
  errorRatePercent: { medium: 5, high: 10, critical: 50 },
  responseTimeSeconds: { medium: 2, high: 5 },
  minRequests: 20,
  minLatencySamples: 20
}

export interface Reason {
  code: string
  message: string
  /** The severity this one finding carries on its own. */
  severity: Severity
  measured: number | boolean | null
  threshold: number | null
}

export interface Assessment {
  severity: Severity
  shouldRollback: boolean
  /** The level to use if it comes to a rollback; null when there is nothing to roll back for. */
  recommendedLevel: RollbackLevel | null
  /** Why that level. */
  levelWhy: string | null
  act: Act
  /** Every finding, worst first; inconclusive readings included. */
  reasons: Reason[]
}

export interface ThresholdOverrides {
  errorRatePercent?: Partial<SeverityThresholds['errorRatePercent']>
  responseTimeSeconds?: Partial<SeverityThresholds['responseTimeSeconds']>
  minRequests?: number
  minLatencySamples?: number
}

/** Defaults with overrides applied, checked: each tier must be a number above the one below it. */
export function resolveThresholds(overrides: ThresholdOverrides = {}): SeverityThresholds {
  const t: SeverityThresholds = {
    errorRatePercent: { ...DEFAULT_THRESHOLDS.errorRatePercent, ...overrides.errorRatePercent },
    responseTimeSeconds: { ...DEFAULT_THRESHOLDS.responseTimeSeconds, ...overrides.responseTimeSeconds },
    minRequests: overrides.minRequests ?? DEFAULT_THRESHOLDS.minRequests,
    minLatencySamples: overrides.minLatencySamples ?? DEFAULT_THRESHOLDS.minLatencySamples
  }
  const e = t.errorRatePercent
  const r = t.responseTimeSeconds
  const ascending = (name: string, values: number[]): void => {
    const ok = values.every((v, i) => Number.isFinite(v) && v >= 0 && (i === 0 || v > values[i - 1]!))
    if (!ok)
      throw new UserError(
        `thresholds.${name}: ${values.join(' < ')} is not an ascending list of non-negative numbers — ` +
          'set medium < high' +
          (values.length > 2 ? ' < critical' : ''),
        'invalid_thresholds'
      )
  }
  ascending('errorRatePercent', [e.medium, e.high, e.critical])
  ascending('responseTimeSeconds', [r.medium, r.high])
  for (const key of ['minRequests', 'minLatencySamples'] as const)
    if (!Number.isInteger(t[key]) || t[key] < 0)
      throw new UserError(
        `thresholds.${key}: ${t[key]} is not a whole number ≥ 0 — set it to e.g. 20`,
        'invalid_thresholds'
      )
  return t
}

const RANK: Record<Severity, number> = { CRITICAL: 4, HIGH: 3, MEDIUM: 2, LOW: 1, INCONCLUSIVE: 0 }
const ACT: Record<Severity, Act> = {
  CRITICAL: 'now',
  HIGH: 'if not resolved in 5 min',
  MEDIUM: 'in 15 min',
  LOW: 'monitor',
  INCONCLUSIVE: 'monitor'
}

interface Finding extends Reason {
  /** The decision tree (or a CRITICAL table row) says roll back. */
  rollback?: boolean
  level?: RollbackLevel
  levelWhy?: string
}

export function classifySeverity(
  m: Measurements,
  thresholds: SeverityThresholds = DEFAULT_THRESHOLDS
): Assessment {
  const findings = [
    ...serviceFindings(m),
    ...errorRateFindings(m, thresholds),
    ...responseTimeFindings(m, thresholds),
    ...flagFindings(m),
    ...healthCheckFindings(m)
  ]
  findings.sort(
    (a, b) => RANK[b.severity] - RANK[a.severity] || Number(b.rollback ?? false) - Number(a.rollback ?? false)
  )

  const worst = findings[0]?.severity ?? 'INCONCLUSIVE'
  const anyInconclusive = findings.some(f => f.severity === 'INCONCLUSIVE')
  // Bad news is acted on even when other probes said nothing; "all fine" needs every probe to have answered.
  const severity: Severity = worst === 'LOW' && anyInconclusive ? 'INCONCLUSIVE' : worst
  const shouldRollback = findings.some(f => f.rollback === true)

  let recommendedLevel: RollbackLevel | null = null
  if (severity !== 'LOW' && severity !== 'INCONCLUSIVE') {
    const previousLevel: RollbackLevel = m.previousHealthy === true ? 1 : 2
    recommendedLevel = Math.max(previousLevel, ...findings.map(f => f.level ?? 1)) as RollbackLevel
  }

  const reasons: Reason[] = findings.map(({ code, message, severity: s, measured, threshold }) => ({
    code,
    message,
    severity: s,
    measured,
    threshold
  }))
  if (findings.length === 0)
    reasons.push({
      code: 'nothing_measured',
      message: 'no measurement was given — no data is not health; probe the service before deciding',
      severity: 'INCONCLUSIVE',
      measured: null,
      threshold: null
    })
  const levelWhy =
    recommendedLevel === null ? null : explainLevel(recommendedLevel, m.previousHealthy, findings)

  return { severity, shouldRollback, recommendedLevel, levelWhy, act: ACT[severity], reasons }
}

function explainLevel(
  level: RollbackLevel,
  previousHealthy: boolean | undefined,
  findings: Finding[]
): string {
  const decisive = findings.find(f => f.level === level && f.levelWhy)
  if (decisive?.levelWhy) return decisive.levelWhy
  if (level === 1) return 'Level 1 (quick switch): the previous environment is healthy'
  return previousHealthy === false
    ? 'Level 2 (full rollback): the previous environment is not healthy, so switching back to it would not help'
    : 'Level 2 (full rollback): the previous environment is not known to be healthy — check it to allow Level 1'
}

function inconclusiveFinding(signal: string, label: string, why: string): Finding {
  return {
    code: `${signal}_inconclusive`,
    message: `${label}: inconclusive — ${why}`,
    severity: 'INCONCLUSIVE',
    measured: null,
    threshold: null
  }
}

function serviceFindings(m: Measurements): Finding[] {
  if (m.serviceUp === undefined) return []
  if (isInconclusive(m.serviceUp))
    return [inconclusiveFinding('service', 'service availability', m.serviceUp.why)]
  if (m.serviceUp)
    return [
      { code: 'service_up', message: 'service is up', severity: 'LOW', measured: true, threshold: null }
    ]
  return [
    {
      code: 'service_down',
      message: 'service is down (complete outage) — roll back immediately',
      severity: 'CRITICAL',
      measured: false,
      threshold: null,
      rollback: true
    }
  ]
}

/** A number reading with its sample count, checked: a usable number, or why it is inconclusive. */
function usableNumber(
  reading: Reading<number>,
  count: number | undefined,
  minCount: number,
  what: string
): number | Inconclusive {
  if (isInconclusive(reading)) return reading
  if (Number.isNaN(reading) || reading < 0) return inconclusive(`${String(reading)} is not a measurement`)
  if (minCount > 0 && count === undefined)
    return inconclusive(`the number of ${what} behind it is unknown (need at least ${minCount})`)
  if (count !== undefined && count < minCount)
    return inconclusive(`only ${count} ${what}, fewer than the minimum ${minCount}`)
  return reading
}

function errorRateFindings(m: Measurements, t: SeverityThresholds): Finding[] {
  if (m.errorRatePercent === undefined) return []
  const value = usableNumber(m.errorRatePercent, m.requestCount, t.minRequests, 'requests')
  if (isInconclusive(value)) return [inconclusiveFinding('error_rate', 'error rate', value.why)]
  if (value > 100) return [inconclusiveFinding('error_rate', 'error rate', `${value} % is not a percentage`)]
  const { medium, high, critical } = t.errorRatePercent
  const ci = m.errorRateInterval
  const shown = `${round(value)} %${ci ? ` (${Math.round(ci.confidence * 100)} % CI ${round(ci.low)}–${round(ci.high)} %)` : ''}`
  if (value > critical)
    return [
      finding('error_rate_critical', `error rate ${shown} > ${critical} %`, 'CRITICAL', value, critical, true)
    ]
  if (value > high)
    return [
      finding(
        'error_rate_high',
        `error rate ${shown} > ${high} % — the tree says roll back`,
        'HIGH',
        value,
        high,
        true
      )
    ]
  if (value > medium)
    return [finding('error_rate_medium', `error rate ${shown} > ${medium} %`, 'MEDIUM', value, medium)]
  return [finding('error_rate_ok', `error rate ${shown} ≤ ${medium} %`, 'LOW', value, medium)]
}

function responseTimeFindings(m: Measurements, t: SeverityThresholds): Finding[] {
  if (m.p95Seconds === undefined) return []
  const value = usableNumber(m.p95Seconds, m.latencySampleCount, t.minLatencySamples, 'latency samples')
  if (isInconclusive(value)) return [inconclusiveFinding('response_time', 'p95 response time', value.why)]
  const { medium, high } = t.responseTimeSeconds
  const shown = `${round(value)} s`
  if (value > high)
    return [
      finding(
        'response_time_high',
        `p95 response time ${shown} > ${high} s — the tree says roll back`,
        'HIGH',
        value,
        high,
        true
      )
    ]
  if (value > medium)
    return [
      finding('response_time_medium', `p95 response time ${shown} > ${medium} s`, 'MEDIUM', value, medium)
    ]
  return [finding('response_time_ok', `p95 response time ${shown} ≤ ${medium} s`, 'LOW', value, medium)]
}

function flagFindings(m: Measurements): Finding[] {
  const out: Finding[] = []
  const flag = (
    reading: Reading<boolean> | undefined,
    signal: string,
    label: string,
    bad: Omit<Finding, 'measured' | 'threshold' | 'severity'>
  ): void => {
    if (reading === undefined) return
    if (isInconclusive(reading)) out.push(inconclusiveFinding(signal, label, reading.why))
    else if (reading)
      out.push({ ...bad, severity: 'CRITICAL', measured: true, threshold: null, rollback: true })
    else
      out.push({
        code: `${signal}_ok`,
        message: `${label}: none`,
        severity: 'LOW',
        measured: false,
        threshold: null
      })
  }
  flag(m.dataCorruption, 'data_corruption', 'data corruption', {
    code: 'data_corruption',
    message: 'data corruption detected — roll back immediately',
    level: 3,
    levelWhy: 'Level 3 (point-in-time restore): only a restore from backup undoes corrupt data'
  })
  flag(m.securityBreach, 'security_breach', 'security breach', {
    code: 'security_breach',
    message: 'security breach discovered — isolate first; restore only once the security team approves',
    level: 3,
    levelWhy:
      'Level 3 (point-in-time restore): a breached system is restored from a backup taken before the breach'
  })
  flag(m.databaseFailure, 'database', 'database failure', {
    code: 'database_failure',
    message: 'database failure — roll back immediately',
    level: 2,
    levelWhy:
      'Level 2 (full rollback): it rolls back the deployment’s migrations and configuration, the usual cause of ' +
      'a database failure after a deploy; if data turns out to be corrupt, escalate to Level 3'
  })
  return out
}

function healthCheckFindings(m: Measurements): Finding[] {
  const failed = m.failedHealthChecks
  if (failed === undefined) return []
  if (isInconclusive(failed)) return [inconclusiveFinding('health_checks', 'health checks', failed.why)]
  if (!Number.isInteger(failed) || failed < 0)
    return [inconclusiveFinding('health_checks', 'health checks', `${failed} is not a count of failures`)]
  if (failed === 0) return [finding('health_checks_ok', 'health checks pass', 'LOW', 0, 0)]
  return [finding('health_checks_failed', `${failed} health check(s) failed`, 'HIGH', failed, 0)]
}

function finding(
  code: string,
  message: string,
  severity: Severity,
  measured: number,
  threshold: number,
  rollback = false
): Finding {
  return { code, message, severity, measured, threshold, rollback }
}

function round(n: number): string {
  return Number.isFinite(n) ? String(Math.round(n * 100) / 100) : String(n)
}

export interface AggregateOptions {
  /** Conclusive samples needed before "pass" can be said. */
  minSamples: number
  /** Failures that make the verdict "fail", however many samples passed. */
  failureLimit: number
}

export interface AggregateVerdict {
  verdict: 'pass' | 'fail' | 'inconclusive'
  passed: number
  failed: number
  inconclusive: number
  why: string
}

/**
 * Repeated samples (true = passed, false = failed) into one verdict: "fail" as soon as the failures reach
 * the limit; "pass" only with at least minSamples conclusive samples below it; otherwise "inconclusive".
 * One sample is never a verdict unless minSamples says so.
 */
export function aggregateSamples(
  samples: readonly Reading<boolean>[],
  options: AggregateOptions
): AggregateVerdict {
  for (const key of ['minSamples', 'failureLimit'] as const)
    if (!Number.isInteger(options[key]) || options[key] < 1)
      throw new UserError(`${key}: ${options[key]} is not a whole number ≥ 1`, 'invalid_thresholds')
  const passed = samples.filter(s => s === true).length
  const failed = samples.filter(s => s === false).length
  const unknown = samples.length - passed - failed
  const counts = { passed, failed, inconclusive: unknown }
  const tally = `${passed} passed, ${failed} failed, ${unknown} inconclusive`
  if (failed >= options.failureLimit)
    return {
      verdict: 'fail',
      ...counts,
      why: `${tally}: failures reached the limit of ${options.failureLimit}`
    }
  if (passed + failed < options.minSamples)
    return {
      verdict: 'inconclusive',
      ...counts,
      why: `${tally}: fewer than ${options.minSamples} conclusive samples`
    }
  return { verdict: 'pass', ...counts, why: `${tally}: failures below the limit of ${options.failureLimit}` }
}

// ---------------------------------------------------------------------------------------------------------
// Sample sizing: enough requests to tell the tiers apart.

/** Two-sided z for a confidence level (0.9, 0.95, 0.99; others by a rational approximation). */
export function zFor(confidence: number): number {
  const known: Record<string, number> = { '0.9': 1.6449, '0.95': 1.96, '0.99': 2.5758 }
  const hit = known[String(confidence)]
  if (hit !== undefined) return hit
  // Acklam-free approximation (Abramowitz & Stegun 26.2.23) of the upper (1 - c) / 2 quantile.
  const p = (1 - confidence) / 2
  const t = Math.sqrt(-2 * Math.log(p))
  return (
    t -
    (2.515517 + 0.802853 * t + 0.010328 * t * t) / (1 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t ** 3)
  )
}

/** Wilson score interval of a proportion failed/n, in %. */
export function wilsonInterval(
  failed: number,
  n: number,
  confidence = 0.95
): { low: number; high: number; confidence: number } {
  if (n <= 0) return { low: 0, high: 100, confidence }
  const z = zFor(confidence)
  const p = failed / n
  const denom = 1 + (z * z) / n
  const centre = (p + (z * z) / (2 * n)) / denom
  const half = (z * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n))) / denom
  return { low: Math.max(0, 100 * (centre - half)), high: Math.min(100, 100 * (centre + half)), confidence }
}

/**
 * Requests needed so that an error rate between the MEDIUM and HIGH thresholds (5 % and 10 % by default) is
 * told apart from both at `confidence`: the interval's half-width at the midpoint is at most half the gap.
 * 5 % vs 10 % at 95 % → 427 requests. The other gaps (10 vs 50) are wider and need fewer.
 */
export function errorRateSampleSize(t: SeverityThresholds, confidence = 0.95): number {
  const { medium, high } = t.errorRatePercent
  const p = (medium + high) / 200
  const half = (high - medium) / 200
  const z = zFor(confidence)
  return Math.ceil((z * z * p * (1 - p)) / (half * half))
}

/**
 * A probe's per-request deadline: above the highest latency threshold (1.5×, at least 2 s more), so a service
 * answering just over it is measured as over it, not cut off at it.
 */
export function probeTimeoutMs(t: SeverityThresholds): number {
  const high = t.responseTimeSeconds.high * 1000
  return Math.round(Math.max(high * 1.5, high + 2000))
}
