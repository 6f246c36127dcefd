import { isInconclusive, wilsonInterval } from '../core/severity'
import { sampleHttp } from '../drivers/http-sampler'
import {
  createPrometheus,
  errorRatePercentQuery,
  p95SecondsQuery,
  requestCountQuery
} from '../drivers/prometheus'
import { sleep } from '../drivers/sleep'
import type { Service } from './service'

/**
 * The runbook's post-rollback monitoring (Level 1: "Monitor for 2 minutes"; after any rollback: "Monitor for 15
 * minutes"): error rate and p95 every interval — from Prometheus when it is configured and has traffic, else sampled
 * through nginx — one live line each, and a verdict at the end.
 */

/** The runbook's windows, seconds. */
export const MONITOR_SECONDS = { level1: 120, postRollback: 900 } as const

export interface MonitorReading {
  at: string
  elapsedSeconds: number
  source: 'prometheus' | 'nginx'
  errorRatePercent?: number
  p95Seconds?: number
  requests: number
  /** Over the validate thresholds (or nothing measured). */
  over: boolean
  line: string
}

export interface MonitorResult {
  seconds: number
  readings: MonitorReading[]
  /** No two readings in a row over the thresholds (or unmeasured). */
  passed: boolean
  summary: string
}

export interface ReadingOptions {
  /** Requests per nginx sample (default 20). */
  samples?: number
}

/** One reading of error rate and p95 now. */
export async function readTraffic(
  service: Service,
  options: ReadingOptions = {}
): Promise<Omit<MonitorReading, 'at' | 'elapsedSeconds' | 'over' | 'line'> & { why?: string; ci?: string }> {
  const { config } = service
  const prom = config.prometheus
  let why: string | undefined
  if (prom) {
    const p = createPrometheus({ url: prom.url })
    const [rate, p95, count] = await Promise.all([
      p.queryValue(prom.errorRateQuery ?? errorRatePercentQuery(prom.window)),
      p.queryValue(prom.p95Query ?? p95SecondsQuery(prom.window)),
      p.queryValue(prom.requestCountQuery ?? requestCountQuery(prom.window))
    ])
    if (!isInconclusive(rate) && !isInconclusive(count) && count >= config.assess.minRequests)
      return {
        source: 'prometheus',
        errorRatePercent: rate,
        p95Seconds: isInconclusive(p95) ? undefined : p95,
        requests: Math.round(count)
      }
    why = `Prometheus: ${isInconclusive(count) ? count.why : isInconclusive(rate) ? rate.why : `only ${Math.round(count)} requests`}`
  }
  const s = await sampleHttp({
    url: `${config.nginx.url}/`,
    requests: options.samples ?? 20,
    concurrency: 10,
    budgetMs: 15_000,
    requestTimeoutMs: Math.max(config.thresholds.responseTimeSeconds.high * 1500, 5000)
  })
  if (s.status !== 'ok') return { source: 'nginx', requests: 0, why: s.why }
  const ci = wilsonInterval(s.failed, s.requests)
  return {
    source: 'nginx',
    errorRatePercent: s.errorRatePercent,
    p95Seconds: s.p95Seconds,
    requests: s.requests,
    why,
    ci: `95 % CI ${ci.low.toFixed(1)}–${ci.high.toFixed(1)} %`
  }
}

export async function monitorWindow(
  service: Service,
  options: { seconds: number; intervalSeconds?: number; onLine?: (line: string) => void; samples?: number }
): Promise<MonitorResult> {
  const th = service.config.thresholds.validate
  const interval = Math.max(0.2, options.intervalSeconds ?? 10)
  const started = Date.now()
  const readings: MonitorReading[] = []
  let streak = 0
  let failedAt: MonitorReading | undefined
  for (;;) {
    const r = await readTraffic(service, { samples: options.samples })
    const elapsedSeconds = Math.round((Date.now() - started) / 1000)
    const over =
      r.errorRatePercent === undefined ||
      r.errorRatePercent >= th.errorRatePercent ||
      (r.p95Seconds !== undefined && r.p95Seconds * 1000 >= th.p95Ms)
    const measured =
      r.errorRatePercent === undefined
        ? `nothing measured (${r.why ?? 'no answer'})`
        : `error rate ${r.errorRatePercent.toFixed(1)} %${r.ci ? ` (${r.ci})` : ''}, p95 ${r.p95Seconds === undefined ? '?' : `${Math.round(r.p95Seconds * 1000)} ms`} over ${r.requests} requests (${r.source})`
    const line = `monitoring ${elapsedSeconds}/${options.seconds} s: ${measured}${over ? ' — OVER' : ''}`
    const reading: MonitorReading = { ...r, at: new Date().toISOString(), elapsedSeconds, over, line }
    readings.push(reading)
    options.onLine?.(line)
    streak = over ? streak + 1 : 0
    if (streak >= 2 && !failedAt) failedAt = reading
    if (Date.now() - started >= options.seconds * 1000) break
    await sleep(interval * 1000)
  }
  const passed = failedAt === undefined
  const summary = passed
    ? `monitored ${options.seconds} s (${readings.length} readings): no sustained breach of error rate ≥ ${th.errorRatePercent} % or p95 ≥ ${th.p95Ms} ms`
    : `monitoring FAILED at ${failedAt!.elapsedSeconds} s: two readings in a row over the thresholds (${failedAt!.line}) — consider the next level (backout rollback --escalate) and page the on-call engineer`
  return { seconds: options.seconds, readings, passed, summary }
}
