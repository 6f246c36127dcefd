import { existsSync, statfsSync } from 'node:fs'
import { classifySeverity, inconclusive, isInconclusive, resolveThresholds, type Assessment, type Measurements, type Reading } from '../core/severity'
import { databasePing } from '../drivers/database'
import { sampleHttp } from '../drivers/http-sampler'
import { createPrometheus, errorRatePercentQuery, p95SecondsQuery, requestCountQuery } from '../drivers/prometheus'
import { activeColor, probeThroughNginx, targetReady, type Service } from './service'

export interface Probe {
  name: string
  value: string
  ms: number
}

export interface AssessReport {
  assessment: Assessment
  measurements: Measurements
  probes: Probe[]
}

async function timed<T>(probes: Probe[], name: string, work: () => Promise<T>, show: (v: T) => string): Promise<T> {
  const started = performance.now()
  const value = await work()
  probes.push({ name, value: show(value), ms: Math.round(performance.now() - started) })
  return value
}

const show = (r: Reading<boolean | number> | undefined): string =>
  r === undefined ? 'not measured' : isInconclusive(r) ? `inconclusive: ${r.why}` : String(r)

/**
 * Measures the service — every probe in parallel, each with its own deadline — and classifies severity with
 * the runbook's decision tree. No data is not health: a probe without an answer is inconclusive.
 */
export async function assess(service: Service, options: { samples: number }): Promise<AssessReport> {
  const { config } = service
  const probes: Probe[] = []
  const active = activeColor(service)
  const previous = active === 'blue' ? 'green' : active === 'green' ? 'blue' : undefined

  const up = timed(
    probes,
    'service up (through nginx)',
    async (): Promise<Reading<boolean>> => {
      const res = await probeThroughNginx(config)
      return res.error ? false : res.status < 500
    },
    show
  )

  const traffic = timed(
    probes,
    config.prometheus ? 'error rate and p95 (Prometheus)' : `error rate and p95 (${options.samples} requests through nginx)`,
    async (): Promise<Pick<Measurements, 'errorRatePercent' | 'p95Seconds' | 'requestCount' | 'latencySampleCount'>> => {
      if (config.prometheus) {
        const prom = createPrometheus({ url: config.prometheus.url })
        const [rate, p95, count] = await Promise.all([
          prom.queryValue(config.prometheus.errorRateQuery ?? errorRatePercentQuery('5m')),
          prom.queryValue(config.prometheus.p95Query ?? p95SecondsQuery('5m')),
          prom.queryValue(requestCountQuery('5m'))
        ])
        const n = typeof count === 'number' ? Math.round(count) : 0
        return { errorRatePercent: rate, p95Seconds: p95, requestCount: n, latencySampleCount: n }
      }
      const sample = await sampleHttp({ url: `${config.nginx.url}/`, requests: options.samples, budgetMs: 20_000, concurrency: 16 })
      if (sample.status !== 'ok') {
        const why = inconclusive(sample.why)
        return { errorRatePercent: why, p95Seconds: why, requestCount: sample.completed, latencySampleCount: sample.completed }
      }
      return {
        errorRatePercent: sample.errorRatePercent,
        p95Seconds: sample.p95Seconds,
        requestCount: sample.completed + sample.errors,
        latencySampleCount: sample.completed
      }
    },
    v =>
      `error rate ${typeof v.errorRatePercent === 'number' ? v.errorRatePercent.toFixed(1) : show(v.errorRatePercent)}%, ` +
      `p95 ${typeof v.p95Seconds === 'number' ? v.p95Seconds.toFixed(3) : show(v.p95Seconds)}s over ${v.requestCount ?? 0} requests`
  )

  const corruption = timed(
    probes,
    'data corruption marker',
    (): Promise<Reading<boolean>> =>
      Promise.resolve(config.corruptionMarker ? existsSync(config.corruptionMarker) : inconclusive('no corruptionMarker configured')),
    show
  )

  const database = timed(
    probes,
    'database',
    async (): Promise<Reading<boolean> | undefined> => (config.database ? !(await databasePing(config.database)).ok : undefined),
    v => (v === undefined ? 'not configured' : v === true ? 'FAILING' : 'answers')
  )

  const previousHealthy = timed(
    probes,
    `previous environment (${previous ?? 'unknown'})`,
    async (): Promise<boolean | undefined> => (previous ? (await targetReady(config, previous)).ready : undefined),
    v => (v === undefined ? 'unknown' : v ? 'ready' : 'not ready')
  )

  const disk = timed(
    probes,
    'disk space (backups)',
    () => {
      const dir = existsSync(config.backups.dir) ? config.backups.dir : config.state.dir
      try {
        const s = statfsSync(existsSync(dir) ? dir : '/')
        return Promise.resolve(`${((s.bavail * s.bsize) / 1e9).toFixed(1)} GB free`)
      } catch (e) {
        return Promise.resolve(`unknown (${e instanceof Error ? e.message : String(e)})`)
      }
    },
    v => v
  )

  const [serviceUp, t, dataCorruption, databaseFailure, prev] = await Promise.all([up, traffic, corruption, database, previousHealthy, disk])
  const measurements: Measurements = { serviceUp, ...t, dataCorruption, databaseFailure, previousHealthy: prev }
  const th = config.thresholds
  const assessment = classifySeverity(
    measurements,
    resolveThresholds({ errorRatePercent: th.errorRatePercent, responseTimeSeconds: th.responseTimeSeconds })
  )
  return { assessment, measurements, probes }
}
