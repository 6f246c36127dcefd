import { z } from 'zod'
import { inconclusive, isInconclusive, type Inconclusive } from '../core/severity'

/**
 * A small client of the Prometheus HTTP query API (/api/v1/query). A query that returns nothing, NaN or
 * fails is an Inconclusive with the reason — never a zero.
 */

/** Error rate, %: 5xx responses over all responses in the window. */
export function errorRatePercentQuery(range = '1m'): string {
  // `or vector(0)`: a service that never answered 5xx has no such series — that is 0 errors, not no data.
  // With no requests at all the denominator stays empty, so the answer stays inconclusive.
  return `100 * (sum(rate(http_requests_total{status=~"5.."}[${range}])) or vector(0)) / sum(rate(http_requests_total[${range}]))`
}

/** p95 latency, seconds. (The runbook's check omits `sum by (le)`, which is wrong across several series.) */
export function p95SecondsQuery(range = '1m'): string {
  return `histogram_quantile(0.95, sum(rate(http_request_duration_seconds_bucket[${range}])) by (le))`
}

/** Requests in the window: the sample count behind the error rate. */
export function requestCountQuery(range = '1m'): string {
  return `sum(increase(http_requests_total[${range}]))`
}

/** Latency observations in the window: the sample count behind the p95. */
export function latencySampleCountQuery(range = '1m'): string {
  return `sum(increase(http_request_duration_seconds_count[${range}]))`
}

export const ERROR_RATE_PERCENT_QUERY = errorRatePercentQuery()
export const P95_SECONDS_QUERY = p95SecondsQuery()
export const REQUEST_COUNT_QUERY = requestCountQuery()
export const LATENCY_SAMPLE_COUNT_QUERY = latencySampleCountQuery()

export interface Sample {
  labels: Record<string, string>
  value: number
}

export interface QueryAnswer {
  status: 'ok'
  samples: Sample[]
}

export type QueryResult = QueryAnswer | Inconclusive

export interface WaitOptions {
  /** Give up after this long, ms. */
  timeoutMs: number
  /** Pause between attempts, ms (default 250). */
  intervalMs?: number
  /** Keep polling until this holds for the answer (default: any answer). */
  until?: (samples: Sample[]) => boolean
}

export interface Prometheus {
  /** Whether /-/ready answers 200. */
  ready(): Promise<boolean>
  /** Every series of an instant query, or why there is no answer. */
  instantQuery(promql: string): Promise<QueryResult>
  /** The single value of a query that must return one series (aggregate with sum() to make it so). */
  queryValue(promql: string): Promise<number | Inconclusive>
  /** Polls instantQuery until it answers (and `until` holds) or the time is up; the last result either way. */
  waitForSeries(promql: string, options: WaitOptions): Promise<QueryResult>
}

export interface PrometheusSettings {
  /** Base URL, e.g. http://127.0.0.1:9090 */
  url: string
  /** Deadline of each HTTP request, ms (default 5000). */
  requestTimeoutMs?: number
}

const sampleValue = z.tuple([z.number(), z.string()])
const queryResponse = z.discriminatedUnion('status', [
  z.object({
    status: z.literal('success'),
    data: z.discriminatedUnion('resultType', [
      z.object({
        resultType: z.literal('vector'),
        result: z.array(z.object({ metric: z.record(z.string(), z.string()), value: sampleValue }))
      }),
      z.object({ resultType: z.literal('scalar'), result: sampleValue }),
      z.object({ resultType: z.enum(['matrix', 'string']), result: z.unknown() })
    ])
  }),
  z.object({ status: z.literal('error'), errorType: z.string(), error: z.string() })
])

export function createPrometheus(settings: PrometheusSettings): Prometheus {
  const base = settings.url.replace(/\/+$/, '')
  const timeoutMs = settings.requestTimeoutMs ?? 5000

  async function get(pathAndQuery: string): Promise<Response> {
    return fetch(`${base}${pathAndQuery}`, { signal: AbortSignal.timeout(timeoutMs) })
  }

  async function instantQuery(promql: string): Promise<QueryResult> {
    let body: unknown
    let httpStatus: number
    try {
      const res = await get(`/api/v1/query?${new URLSearchParams({ query: promql }).toString()}`)
      httpStatus = res.status
      body = await res.json()
    } catch (e) {
      return inconclusive(`request to ${base} failed: ${describeFailure(e)}`)
    }
    const parsed = queryResponse.safeParse(body)
    if (!parsed.success) return inconclusive(`unexpected answer from ${base} (HTTP ${httpStatus})`)
    const answer = parsed.data
    if (answer.status === 'error')
      return inconclusive(`query rejected (${answer.errorType}): ${answer.error}`)
    const data = answer.data
    let samples: Sample[]
    if (data.resultType === 'vector')
      samples = data.result.map(r => ({ labels: r.metric, value: parseValue(r.value[1]) }))
    else if (data.resultType === 'scalar') samples = [{ labels: {}, value: parseValue(data.result[1]) }]
    else return inconclusive(`expected an instant vector or scalar, got a ${data.resultType}`)
    if (samples.length === 0) return inconclusive('the query returned no series (no data in the window)')
    const nan = samples.filter(s => Number.isNaN(s.value))
    if (nan.length > 0)
      return inconclusive(
        `the query returned NaN for ${nan.map(s => JSON.stringify(s.labels)).join(', ')} ` +
          '(0/0: no requests in the window?)'
      )
    return { status: 'ok', samples }
  }

  return {
    async ready() {
      try {
        const res = await get('/-/ready')
        await res.body?.cancel()
        return res.ok
      } catch {
        return false
      }
    },
    instantQuery,
    async queryValue(promql) {
      const result = await instantQuery(promql)
      if (isInconclusive(result)) return result
      const [only, ...more] = result.samples
      if (!only || more.length > 0)
        return inconclusive(
          `expected one series, got ${result.samples.length} — aggregate the query with sum()`
        )
      return only.value
    },
    async waitForSeries(promql, options) {
      const deadline = Date.now() + options.timeoutMs
      const accept = options.until ?? (() => true)
      for (;;) {
        const result = await instantQuery(promql)
        if (!isInconclusive(result) && accept(result.samples)) return result
        if (Date.now() >= deadline) {
          const last = isInconclusive(result)
            ? result.why
            : `answered ${result.samples.map(s => s.value).join(', ')}, not yet what was awaited`
          return inconclusive(`no awaited answer within ${options.timeoutMs} ms; last: ${last}`)
        }
        await new Promise(r => setTimeout(r, options.intervalMs ?? 250))
      }
    }
  }
}

/** Prometheus writes values as strings, infinities as "+Inf" / "-Inf". */
function parseValue(text: string): number {
  if (text === '+Inf') return Infinity
  if (text === '-Inf') return -Infinity
  return Number(text)
}

/** Why a fetch failed. Duck-typed: fetch's errors may come from another realm (e.g. under jest). */
function describeFailure(e: unknown): string {
  const { name, message, cause } = (e ?? {}) as {
    name?: unknown
    message?: unknown
    cause?: { message?: unknown }
  }
  if (name === 'TimeoutError') return 'timed out'
  const text = typeof message === 'string' ? message : String(e)
  return typeof cause?.message === 'string' ? `${text}: ${cause.message}` : text
}
