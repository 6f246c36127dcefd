import { UserError } from '../core/errors'
import { inconclusive, type Inconclusive } from '../core/severity'

/**
 * Measures error rate and latency without Prometheus: a bounded burst of GET requests to one URL (through
 * nginx, as users reach the service), a few at a time, within a time budget.
 */
export interface SampleSettings {
  url: string
  /** Requests to send (1..MAX_REQUESTS). */
  requests: number
  /** Requests in flight at once (1..MAX_CONCURRENCY, default 4). */
  concurrency?: number
  /**
   * Deadline of each request, ms (default 5000). A request past it counts as slow — its latency is the deadline,
   * a lower bound of the truth — not as an error and not as missing data. Set it above the highest latency
   * threshold, or a service slower than the threshold reads as merely "at the deadline".
   */
  requestTimeoutMs?: number
  /** Budget for the whole sample, ms (default 30000); no request starts after it, in-flight ones are cut. */
  budgetMs?: number
  /** Fewest HTTP responses for a conclusive answer (default 20, at most `requests`). */
  minCompleted?: number
}

export interface SampleCounts {
  /** Requests started. */
  attempted: number
  /** Requests answered with an HTTP status. */
  completed: number
  /** 2xx and 3xx answers. */
  ok: number
  /** 5xx answers. */
  serverErrors: number
  /** 4xx answers: counted, not errors of the service. */
  clientErrors: number
  /** Requests that got no answer: refused, reset. */
  errors: number
  /** Requests still unanswered at their deadline: counted as slow (latency = the deadline). */
  timedOut: number
  /** Requests cut off by the budget: neither good nor bad. */
  cut: number
  /** The first few distinct transport errors, for the report. */
  errorKinds: string[]
}

export interface SampleMeasurement extends SampleCounts {
  status: 'ok'
  /** (5xx + transport errors) / (completed + transport errors), %. */
  errorRatePercent: number
  /** Failed requests (5xx + transport errors) and the requests behind the rate: for a confidence interval. */
  failed: number
  requests: number
  /** 95th percentile latency of the completed and timed-out requests (nearest rank), seconds. */
  p95Seconds: number
  /** Latency observations behind the p95 (completed + timed out). */
  latencySamples: number
}

export type SampleResult = SampleMeasurement | (Inconclusive & SampleCounts)

export const MAX_REQUESTS = 10_000
export const MAX_CONCURRENCY = 256

export async function sampleHttp(settings: SampleSettings): Promise<SampleResult> {
  const requests = bounded('requests', settings.requests, 1, MAX_REQUESTS)
  const concurrency = bounded('concurrency', settings.concurrency ?? 4, 1, MAX_CONCURRENCY)
  const requestTimeoutMs = settings.requestTimeoutMs ?? 5000
  const minCompleted = Math.min(settings.minCompleted ?? 20, requests)
  const budget = AbortSignal.timeout(settings.budgetMs ?? 30_000)

  const counts: SampleCounts = {
    attempted: 0,
    completed: 0,
    ok: 0,
    serverErrors: 0,
    clientErrors: 0,
    errors: 0,
    timedOut: 0,
    cut: 0,
    errorKinds: []
  }
  const latencies: number[] = []

  async function one(): Promise<void> {
    const started = performance.now()
    const timeout = AbortSignal.timeout(requestTimeoutMs)
    try {
      const res = await fetch(settings.url, { signal: AbortSignal.any([budget, timeout]) })
      await res.arrayBuffer()
      latencies.push((performance.now() - started) / 1000)
      counts.completed++
      if (res.status >= 500) counts.serverErrors++
      else if (res.status >= 400) counts.clientErrors++
      else counts.ok++
    } catch (e) {
      if (budget.aborted && !timeout.aborted) {
        counts.cut++
        return
      }
      if (timeout.aborted) {
        // Slow, not missing: the user waited at least this long.
        counts.timedOut++
        latencies.push(requestTimeoutMs / 1000)
        return
      }
      counts.errors++
      const kind = describeFailure(e)
      if (counts.errorKinds.length < 5 && !counts.errorKinds.includes(kind)) counts.errorKinds.push(kind)
    }
  }

  async function worker(): Promise<void> {
    while (counts.attempted < requests && !budget.aborted) {
      counts.attempted++
      await one()
    }
  }

  await Promise.all(Array.from({ length: Math.min(concurrency, requests) }, worker))

  if (counts.completed + counts.timedOut < minCompleted) {
    const transport =
      counts.errors > 0 ? `; ${counts.errors} got no answer (${counts.errorKinds.join('; ')})` : ''
    const cut = counts.cut > 0 || counts.attempted < requests ? ' before the time budget ran out' : ''
    return {
      ...inconclusive(
        `only ${counts.completed} of ${requests} requests to ${settings.url} completed` +
          `${counts.timedOut ? ` (${counts.timedOut} more timed out)` : ''}${cut}, ` +
          `fewer than the minimum ${minCompleted}${transport}`
      ),
      ...counts
    }
  }
  const failed = counts.serverErrors + counts.errors
  const answered = counts.completed + counts.errors
  return {
    status: 'ok',
    ...counts,
    // Timed-out requests count for latency only: whether they would have failed is unknown.
    errorRatePercent: answered ? (100 * failed) / answered : 0,
    failed,
    requests: answered,
    p95Seconds: nearestRank(latencies, 0.95),
    latencySamples: latencies.length
  }
}

/** The q-quantile by nearest rank: the smallest value with at least q of the values at or below it. */
export function nearestRank(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  const value = sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]
  if (value === undefined) throw new Error('nearestRank: no values')
  return value
}

function bounded(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max)
    throw new UserError(
      `sample.${name}: ${value} is not a whole number in ${min}..${max} — set it within that range`
    )
  return value
}

/** The errno code (ECONNREFUSED…) or message of a failed fetch. Duck-typed: fetch's errors may come from another realm. */
function describeFailure(e: unknown): string {
  const { message, cause } = (e ?? {}) as { message?: unknown; cause?: { code?: unknown; message?: unknown } }
  if (typeof cause?.code === 'string') return cause.code
  if (typeof cause?.message === 'string') return cause.message
  return typeof message === 'string' ? message : String(e)
}
