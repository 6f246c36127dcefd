import {
  createPrometheus,
  ERROR_RATE_PERCENT_QUERY,
  LATENCY_SAMPLE_COUNT_QUERY,
  P95_SECONDS_QUERY,
  REQUEST_COUNT_QUERY,
  type Prometheus
} from '../../src/drivers/prometheus'
import { classifySeverity, isInconclusive } from '../../src/core/severity'
import { describeWith } from '../support/real-system'
import { startMetricsApp, type MetricsApp } from '../support/metrics-app'
import { hasPrometheus, startPrometheus, type TestPrometheus } from '../support/prometheus'
import { freePort } from '../support/ports'

const describeIfPrometheus = describeWith(
  hasPrometheus ? '' : 'prometheus is not installed',
  'Prometheus driver'
)

/** Keeps `workers` requests in flight against url until stopped. */
function startTraffic(url: string, workers: number): { stop(): Promise<void> } {
  let running = true
  const loops = Array.from({ length: workers }, async () => {
    while (running)
      await fetch(url).then(
        r => r.text(),
        () => undefined
      )
  })
  return {
    async stop() {
      running = false
      await Promise.all(loops)
    }
  }
}

describeIfPrometheus('Prometheus driver against a real Prometheus scraping real traffic', () => {
  let app: MetricsApp
  let prometheus: TestPrometheus
  let client: Prometheus

  beforeAll(async () => {
    app = await startMetricsApp({ errorShare: 0.12, delayMs: 300 })
    prometheus = await startPrometheus([app.target])
    client = createPrometheus({ url: prometheus.url })
  })

  afterAll(async () => {
    await prometheus?.stop()
    await app?.stop()
  })

  it('is ready', async () => {
    expect(await client.ready()).toBe(true)
  })

  it('a query for a series that does not exist is inconclusive, not zero', async () => {
    const result = await client.instantQuery('http_requests_total{job="no-such-job"}')
    expect(result).toEqual({ status: 'inconclusive', why: expect.stringMatching(/no series/) })
  })

  it('with no traffic the error rate is inconclusive (NaN: 0/0), never 0 %', async () => {
    // Two scrapes of the zero counters: rate() is defined and 0, so the ratio is 0/0.
    const scraped = await client.waitForSeries('count_over_time(http_requests_total{status="200"}[1m])', {
      timeoutMs: 30_000,
      until: ([s]) => (s?.value ?? 0) >= 2
    })
    expect(isInconclusive(scraped)).toBe(false)
    const rate = await client.instantQuery(ERROR_RATE_PERCENT_QUERY)
    expect(rate).toEqual({ status: 'inconclusive', why: expect.stringMatching(/NaN/) })
  })

  it('measures a 12 % error rate and the p95 from real traffic', async () => {
    const traffic = startTraffic(`${app.url}/api/orders`, 16)
    try {
      const counted = await client.waitForSeries(REQUEST_COUNT_QUERY, {
        timeoutMs: 30_000,
        until: ([s]) => (s?.value ?? 0) >= 200
      })
      expect(isInconclusive(counted)).toBe(false)
    } finally {
      await traffic.stop()
    }
    const [errorRate, requests, p95, latencySamples] = await Promise.all([
      client.queryValue(ERROR_RATE_PERCENT_QUERY),
      client.queryValue(REQUEST_COUNT_QUERY),
      client.queryValue(P95_SECONDS_QUERY),
      client.queryValue(LATENCY_SAMPLE_COUNT_QUERY)
    ])
    if (
      isInconclusive(errorRate) ||
      isInconclusive(p95) ||
      isInconclusive(requests) ||
      isInconclusive(latencySamples)
    )
      throw new Error('a query was inconclusive after traffic')
    console.log(
      `Prometheus: error rate ${errorRate} %, requests ${requests}, p95 ${p95} s; ` +
        `app served ${JSON.stringify(app.served())}`
    )
    expect(errorRate).toBeGreaterThan(10.5)
    expect(errorRate).toBeLessThan(13.5)
    // Every request waited 300 ms, so all fall in the (0.25, 0.5] bucket or above.
    expect(p95).toBeGreaterThan(0.25)

    const assessment = classifySeverity({
      serviceUp: true,
      errorRatePercent: errorRate,
      requestCount: Math.floor(requests),
      p95Seconds: p95,
      latencySampleCount: Math.floor(latencySamples),
      previousHealthy: true
    })
    expect(assessment).toMatchObject({ severity: 'HIGH', shouldRollback: true, recommendedLevel: 1 })
  })

  it('a query over several series is not a single value', async () => {
    const value = await client.queryValue('http_requests_total')
    expect(value).toEqual({
      status: 'inconclusive',
      why: expect.stringMatching(/expected one series, got 2/)
    })
  })

  it('a malformed query is inconclusive with Prometheus’s reason', async () => {
    const result = await client.instantQuery('sum(rate(http_requests_total[1m])')
    expect(result).toEqual({
      status: 'inconclusive',
      why: expect.stringMatching(/query rejected \(bad_data\)/)
    })
  })

  it('waitForSeries gives up at its deadline with the last reason', async () => {
    const result = await client.waitForSeries('no_such_metric', { timeoutMs: 300, intervalMs: 50 })
    expect(result).toEqual({
      status: 'inconclusive',
      why: expect.stringMatching(/no awaited answer within 300 ms; last: .*no series/)
    })
  })
})

describe('Prometheus driver when Prometheus is not there', () => {
  it('is not ready and every query is inconclusive with the failure', async () => {
    const client = createPrometheus({ url: `http://127.0.0.1:${await freePort()}`, requestTimeoutMs: 2000 })
    expect(await client.ready()).toBe(false)
    const result = await client.instantQuery(ERROR_RATE_PERCENT_QUERY)
    expect(result).toEqual({
      status: 'inconclusive',
      why: expect.stringMatching(/request to .* failed: fetch failed: .*ECONNREFUSED/)
    })
  })
})
