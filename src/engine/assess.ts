import { existsSync } from 'node:fs'
import { messageOf } from '../core/errors'
import {
  aggregateSamples,
  classifySeverity,
  errorRateSampleSize,
  inconclusive,
  isInconclusive,
  probeTimeoutMs,
  resolveThresholds,
  wilsonInterval,
  type AggregateVerdict,
  type Assessment,
  type Measurements,
  type Reading,
  type Reason
} from '../core/severity'
import { databasePing } from '../drivers/database'
import { sampleHttp } from '../drivers/http-sampler'
import {
  createPrometheus,
  errorRatePercentQuery,
  p95SecondsQuery,
  requestCountQuery
} from '../drivers/prometheus'
import { activeColor, probeThroughNginx, targetReady, type Service } from './service'
import { sleep } from '../drivers/sleep'
import {
  diskSpace,
  dockerDaemon,
  knownPorts,
  listening,
  nginxAddress,
  targetState,
  withDeadline
} from './probes'
import { recordAssessment } from './observations'
import { recommend, type Recommendation } from './recommend'

export {
  diskSpace,
  dockerDaemon,
  knownPorts,
  listening,
  nginxAddress,
  targetState,
  withDeadline
} from './probes'

export interface Probe {
  name: string
  value: string
  ms: number
}

export interface AssessReport {
  assessment: Assessment
  measurements: Measurements
  probes: Probe[]
  /** Where error rate and p95 came from: Prometheus, or requests sampled through nginx (and why). */
  trafficSource: string
  /** What to do, checked by a dry run; absent when assess was asked not to check (recommend: false). */
  recommendation?: Recommendation
}

export interface AssessOptions {
  /** Requests per round through nginx when there is no Prometheus (default: assess.samples). */
  samples?: number
  /** Rounds before a verdict (default: assess.rounds). */
  rounds?: number
  /** Rounds over a threshold that make the verdict (default: assess.failureLimit). */
  failureLimit?: number
  /** Pause between rounds, ms (default: assess.intervalSeconds). */
  intervalMs?: number
  /** Dry-run the recommended level before recommending it (default true). */
  recommend?: boolean
}

/** Confidence the error-rate sample is sized for and its interval is stated at. */
export const ERROR_RATE_CONFIDENCE = 0.95

/**
 * Requests in flight at once while sampling: a round of a slow service (6 s answers) takes one or two request
 * deadlines, not ten. Cheap on loopback; nginx's default 1024 worker connections hold it twice over.
 */
const SAMPLE_CONCURRENCY = 160

/** Deadline of one probe that is not a sampling round. */
const PROBE_DEADLINE_MS = 10_000

interface TrafficRound {
  errorRatePercent: Reading<number>
  p95Seconds: Reading<number>
  requests: number
  /** Failed requests behind the rate (sampling only: Prometheus gives a rate). */
  failed?: number
  latencySamples: number
  source: 'prometheus' | 'nginx'
}

const showReading = (r: Reading<boolean | number> | undefined): string =>
  r === undefined
    ? 'not measured'
    : isInconclusive(r)
      ? `inconclusive: ${r.why}`
      : typeof r === 'number'
        ? String(Math.round(r * 1000) / 1000)
        : String(r)

const fixed = (r: Reading<number>, digits: number): string =>
  isInconclusive(r) ? `inconclusive (${r.why})` : r.toFixed(digits)

/**
 * Repeated readings of one number into one: inconclusive unless every round answered or the failures
 * (rounds over `bad`) reached the limit; otherwise the value that held in `failureLimit` rounds — the
 * failureLimit-th highest — so one spike is not a verdict and a sustained breach is.
 */
export function sustained(
  readings: readonly Reading<number>[],
  bad: (v: number) => boolean,
  failureLimit: number
): { value: Reading<number>; verdict: AggregateVerdict } {
  const verdict = aggregateSamples(
    readings.map(r => (isInconclusive(r) ? r : !bad(r))),
    { minSamples: readings.length, failureLimit }
  )
  if (verdict.verdict === 'inconclusive') {
    const first = readings.find(isInconclusive)
    return { value: inconclusive(`${verdict.why}${first ? ` (${first.why})` : ''}`), verdict }
  }
  const values = readings.filter((r): r is number => !isInconclusive(r)).sort((a, b) => b - a)
  return { value: values[Math.min(failureLimit, values.length) - 1]!, verdict }
}

/**
 * Measures the service — every probe in parallel, each with its own deadline — and classifies severity with
 * the runbook's decision tree. Service-up, error rate and p95 are taken in `rounds` rounds and aggregated with
 * the failure limit. No data is not health: a probe without an answer is inconclusive.
 */
export async function assess(service: Service, options: AssessOptions = {}): Promise<AssessReport> {
  const { config } = service
  const settings = config.assess
  const rounds = options.rounds ?? settings.rounds
  const failureLimit = Math.min(options.failureLimit ?? settings.failureLimit, rounds)
  const samples = options.samples ?? settings.samples
  const intervalMs = options.intervalMs ?? settings.intervalSeconds * 1000
  const thresholds = resolveThresholds({
    errorRatePercent: config.thresholds.errorRatePercent,
    responseTimeSeconds: config.thresholds.responseTimeSeconds,
    minRequests: settings.minRequests,
    minLatencySamples: settings.minRequests
  })
  const probes: Probe[] = []
  const active = activeColor(service)
  const previous = active === 'blue' ? 'green' : active === 'green' ? 'blue' : undefined

  const timed = async <T>(name: string, work: () => Promise<T>, show: (v: T) => string): Promise<T> => {
    const started = performance.now()
    const value = await work()
    probes.push({ name, value: show(value), ms: Math.round(performance.now() - started) })
    return value
  }
  const deadline = <T>(work: Promise<T>, onTimeout: () => T): Promise<T> =>
    withDeadline(work, PROBE_DEADLINE_MS, onTimeout)
  const late = `no answer within ${PROBE_DEADLINE_MS / 1000} s`

  const prom = config.prometheus
  const prometheus = prom ? createPrometheus({ url: prom.url }) : undefined
  // Sized from the thresholds: enough requests over all rounds to tell MEDIUM from HIGH at 95 % confidence.
  const needed = errorRateSampleSize(thresholds, ERROR_RATE_CONFIDENCE)
  const perRound = Math.min(10_000, Math.max(samples, Math.ceil(needed / rounds)))
  const requestTimeoutMs = probeTimeoutMs(thresholds)
  const roundDeadlineMs = Math.max(30_000, 3 * requestTimeoutMs + 5000)
  /** Why Prometheus could not be used, once it could not: every later round samples through nginx. */
  let promFailure: string | undefined

  const promRound = async (): Promise<TrafficRound | string> => {
    if (!prom || !prometheus) return 'not configured'
    const [rate, p95, count] = await Promise.all([
      prometheus.queryValue(prom.errorRateQuery ?? errorRatePercentQuery(prom.window)),
      prometheus.queryValue(prom.p95Query ?? p95SecondsQuery(prom.window)),
      prometheus.queryValue(prom.requestCountQuery ?? requestCountQuery(prom.window))
    ])
    if (isInconclusive(count)) return `request count: ${count.why}`
    const requests = Math.round(count)
    if (requests < settings.minRequests)
      return `only ${requests} requests in ${prom.window}, fewer than ${settings.minRequests} (no traffic)`
    if (isInconclusive(rate)) return `error rate: ${rate.why}`
    return {
      errorRatePercent: rate,
      p95Seconds: p95,
      requests,
      latencySamples: requests,
      source: 'prometheus'
    }
  }
  const sampleRound = async (): Promise<TrafficRound> => {
    const sample = await sampleHttp({
      url: `${config.nginx.url}/`,
      requests: perRound,
      requestTimeoutMs,
      budgetMs: roundDeadlineMs - 3000,
      concurrency: Math.min(perRound, SAMPLE_CONCURRENCY),
      minCompleted: Math.min(settings.minRequests, perRound)
    })
    if (sample.status !== 'ok') {
      const why = inconclusive(sample.why)
      return {
        errorRatePercent: why,
        p95Seconds: why,
        requests: sample.completed + sample.errors,
        latencySamples: 0,
        source: 'nginx'
      }
    }
    const short = (n: number, what: string): Reading<number> | undefined =>
      n < settings.minRequests
        ? inconclusive(`only ${n} ${what}, fewer than ${settings.minRequests}`)
        : undefined
    return {
      errorRatePercent: short(sample.requests, 'answered requests') ?? sample.errorRatePercent,
      p95Seconds: short(sample.latencySamples, 'latency samples') ?? sample.p95Seconds,
      requests: sample.requests,
      failed: sample.failed,
      latencySamples: sample.latencySamples,
      source: 'nginx'
    }
  }
  const trafficRound = async (): Promise<TrafficRound> => {
    if (prom && promFailure === undefined) {
      const r = await promRound()
      if (typeof r !== 'string') return r
      promFailure = r
    }
    return sampleRound()
  }
  const upRound = async (): Promise<Reading<boolean>> => {
    const res = await probeThroughNginx(config)
    return res.error ? false : res.status < 500
  }

  const sampled = timed(
    `service up, error rate and p95: ${rounds} rounds (${prom ? `Prometheus, ${prom.window}; else ` : ''}${perRound} requests through nginx, ${requestTimeoutMs / 1000} s deadline each), failure limit ${failureLimit}`,
    async () => {
      const ups: Reading<boolean>[] = []
      const traffic: TrafficRound[] = []
      for (let i = 0; i < rounds; i++) {
        if (i > 0) await sleep(intervalMs)
        const [up, t] = await Promise.all([
          withDeadline(upRound(), roundDeadlineMs, () =>
            inconclusive(`no answer within ${roundDeadlineMs / 1000} s`)
          ),
          withDeadline(trafficRound(), roundDeadlineMs, (): TrafficRound => {
            const why = inconclusive(`no answer within ${roundDeadlineMs / 1000} s`)
            return { errorRatePercent: why, p95Seconds: why, requests: 0, latencySamples: 0, source: 'nginx' }
          })
        ])
        ups.push(up)
        traffic.push(t)
      }
      const upVerdict = aggregateSamples(ups, { minSamples: rounds, failureLimit })
      const serviceUp: Reading<boolean> =
        upVerdict.verdict === 'pass'
          ? true
          : upVerdict.verdict === 'fail'
            ? false
            : inconclusive(upVerdict.why)
      const p95 = sustained(
        traffic.map(t => t.p95Seconds),
        v => v > thresholds.responseTimeSeconds.high,
        failureLimit
      )
      const latencyCounts = traffic.filter(t => !isInconclusive(t.p95Seconds)).map(t => t.latencySamples)
      // Sampled rounds are pooled (independent requests: the interval narrows with each); Prometheus rounds read
      // overlapping windows of the same traffic, so they are not pooled: the sustained value holds.
      const pooled = traffic.filter(
        t => t.source === 'nginx' && t.failed !== undefined && !isInconclusive(t.errorRatePercent)
      )
      let errorRatePercent: Reading<number>
      let requestCount: number
      let errorRateInterval: Measurements['errorRateInterval']
      if (
        pooled.length > 0 &&
        pooled.length === traffic.filter(t => !isInconclusive(t.errorRatePercent)).length
      ) {
        const failed = pooled.reduce((n, t) => n + (t.failed ?? 0), 0)
        requestCount = pooled.reduce((n, t) => n + t.requests, 0)
        errorRatePercent = (100 * failed) / requestCount
        errorRateInterval = wilsonInterval(failed, requestCount, ERROR_RATE_CONFIDENCE)
      } else {
        const rate = sustained(
          traffic.map(t => t.errorRatePercent),
          v => v > thresholds.errorRatePercent.high,
          failureLimit
        )
        errorRatePercent = rate.value
        const counted = traffic.filter(t => !isInconclusive(t.errorRatePercent)).map(t => t.requests)
        requestCount = counted.length ? Math.min(...counted) : 0
        if (!isInconclusive(rate.value) && requestCount > 0)
          errorRateInterval = wilsonInterval(
            Math.round((rate.value / 100) * requestCount),
            requestCount,
            ERROR_RATE_CONFIDENCE
          )
      }
      const measured: Measurements = {
        serviceUp,
        errorRatePercent,
        errorRateInterval,
        p95Seconds: p95.value,
        requestCount,
        latencySampleCount: latencyCounts.length ? Math.min(...latencyCounts) : 0
      }
      const sources = new Set(traffic.map(t => t.source))
      const source = !sources.has('nginx')
        ? `Prometheus (${prom?.url ?? '?'}, window ${prom?.window ?? '?'})`
        : `${traffic.filter(t => t.source === 'nginx').length} rounds of up to ${perRound} requests sampled through nginx ${config.nginx.url}` +
          (prom ? ` — Prometheus was not used: ${promFailure ?? 'unknown'}` : ' (no Prometheus configured)')
      return {
        measured,
        source,
        rounds: traffic.map(
          (t, i) =>
            `${showReading(ups[i])}/${fixed(t.errorRatePercent, 1)}%/${fixed(t.p95Seconds, 3)}s/${t.requests}`
        )
      }
    },
    ({ measured: m, rounds: r, source }) =>
      `up ${showReading(m.serviceUp)}, error rate ${showReading(m.errorRatePercent)} %` +
      (m.errorRateInterval
        ? ` (95 % CI ${m.errorRateInterval.low.toFixed(1)}–${m.errorRateInterval.high.toFixed(1)} % over ${m.requestCount} requests)`
        : '') +
      `, p95 ${showReading(m.p95Seconds)} s; source: ${source}; ` +
      `rounds (up/rate/p95/requests): ${r.join(' | ')}`
  )

  const corruption = timed(
    'data corruption marker',
    (): Promise<Reading<boolean>> =>
      Promise.resolve(
        config.corruptionMarker
          ? existsSync(config.corruptionMarker)
          : inconclusive('no corruptionMarker configured')
      ),
    showReading
  )

  const database = timed(
    'database',
    async (): Promise<Reading<boolean> | undefined> =>
      config.database
        ? deadline(
            databasePing(config.database).then(p => !p.ok),
            (): Reading<boolean> => inconclusive(late)
          )
        : undefined,
    v => (v === undefined ? 'not configured' : v === true ? 'FAILING' : isInconclusive(v) ? v.why : 'answers')
  )

  const previousHealthy = timed(
    `previous environment (${previous ?? 'unknown'})`,
    async (): Promise<boolean | undefined> =>
      previous
        ? deadline(
            targetReady(config, previous).then(r => r.ready),
            () => false
          )
        : undefined,
    v => (v === undefined ? 'unknown' : v ? 'ready' : 'not ready')
  )

  // Health checks: the live target's runtime state, the ports users depend on, and (compose) the daemon.
  const liveState = timed(
    `live target state (${active ?? 'none'}, ${config.runtime})`,
    async (): Promise<Reading<boolean> | undefined> =>
      active
        ? deadline(
            targetState(service, active).then(s => s.healthy),
            (): Reading<boolean> => inconclusive(late)
          ).catch((e: unknown) => inconclusive(messageOf(e)))
        : undefined,
    v =>
      v === undefined ? 'nginx points at neither target' : isInconclusive(v) ? v.why : v ? 'healthy' : 'DOWN'
  )
  const ports = timed(
    'ports listening',
    () => Promise.all(knownPorts(config).map(async p => ({ ...p, open: await listening(p.address) }))),
    v => v.map(p => `${p.name} ${p.address} ${p.open ? 'listening' : 'CLOSED'}`).join(', ')
  )
  const daemon = timed(
    'Docker daemon',
    async () =>
      config.runtime === 'compose'
        ? deadline(dockerDaemon(), () => ({ ok: false, detail: late }))
        : undefined,
    v => (v === undefined ? `not used (runtime ${config.runtime})` : v.detail)
  )
  const disk = timed(
    'disk space (backups)',
    () => diskSpace(service).catch((e: unknown) => ({ low: false, detail: `unknown (${messageOf(e)})` })),
    v => v.detail
  )

  const [t, dataCorruption, databaseFailure, prev, live, open, docker, space] = await Promise.all([
    sampled,
    corruption,
    database,
    previousHealthy,
    liveState,
    ports,
    daemon,
    disk
  ])
  const checks: Reading<boolean>[] = [
    ...(live === undefined ? [] : [live]),
    ...open.filter(p => p.name === 'nginx' || p.name === active).map(p => p.open),
    ...(docker ? [docker.ok] : [])
  ]
  const unknown = checks.find(isInconclusive)
  const failedHealthChecks: Reading<number> = unknown ?? checks.filter(c => c === false).length
  const measurements: Measurements = {
    ...t.measured,
    dataCorruption,
    databaseFailure,
    failedHealthChecks,
    previousHealthy: prev
  }
  const assessment = classifySeverity(measurements, thresholds)
  assessment.reasons.push({
    code: 'traffic_source',
    message: `error rate and p95 from ${t.source}`,
    severity: 'LOW',
    measured: null,
    threshold: null
  })
  if (space.low) assessment.reasons.push(diskReason(space.detail))
  const report: AssessReport = { assessment, measurements, probes, trafficSource: t.source }
  try {
    recordAssessment(config, assessment.severity, assessment.shouldRollback)
  } catch (e) {
    service.log.warn(`could not record the assessment in ${config.state.dir}: ${messageOf(e)}`)
  }
  if (options.recommend === false) return report
  const started = performance.now()
  const nginxOpen = open.find(p => p.name === 'nginx')?.open ?? (await listening(nginxAddress(config)))
  const dbDown = databaseFailure === true ? await databaseRefuses(config) : undefined
  report.recommendation = await recommend(service, {
    wanted: assessment.recommendedLevel,
    nginxListening: nginxOpen,
    databaseDown: dbDown
  })
  probes.push({
    name: 'recommendation (dry run of each level tried)',
    value:
      report.recommendation.checked.map(c => `Level ${c.level}: ${c.detail}`).join('; ') ||
      'no dry run needed',
    ms: Math.round(performance.now() - started)
  })
  return report
}

/** The database server's port refuses connections: it is not running (not a query failing on a live server). */
async function databaseRefuses(config: Service['config']): Promise<{ detail: string } | undefined> {
  const db = config.database
  if (db?.kind !== 'postgres') return undefined
  const url = new URL(db.url)
  const address = `${url.hostname}:${url.port || '5432'}`
  return (await listening(address)) ? undefined : { detail: `nothing listens on ${address}` }
}

/** Disk running short is not a severity of its own (the runbook lists it under Common Issues): a LOW note. */
function diskReason(detail: string): Reason {
  return {
    code: 'disk_low',
    message: `disk space low: ${detail} — a rollback needs room for its safety backup`,
    severity: 'LOW',
    measured: null,
    threshold: null
  }
}
