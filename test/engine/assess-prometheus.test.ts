import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { parse, stringify } from 'yaml'
import { MemoryLogger } from '../../src/core/logger'
import { isInconclusive } from '../../src/core/severity'
import { loadConfig } from '../../src/drivers/config-file'
import { readPid } from '../../src/drivers/process'
import { createPrometheus } from '../../src/drivers/prometheus'
import { assess, listening } from '../../src/engine/assess'
import { rollback } from '../../src/engine/rollback'
import { createService, type Service } from '../../src/engine/service'
import { describeWith } from '../support/real-system'
import { validate } from '../../src/engine/validate'
import { CLI, startSandbox, type TestSandbox } from '../support/cli'
import { freePort } from '../support/ports'
import { hasPrometheus, startPrometheus, type TestPrometheus } from '../support/prometheus'

/**
 * The runbook's severity cases on real signals: a real Prometheus scraping the sandbox's blue and green apps
 * (and a third app answering in 6 s), real nginx and PostgreSQL. Each case's queries are scoped to the instance
 * that takes the traffic, over a 20 s window.
 */

jest.setTimeout(120_000)
const run = describeWith(hasPrometheus ? '' : 'prometheus is not installed', 'assess with Prometheus')

let sb: TestSandbox
let prom: TestPrometheus
let slow: ChildProcess
let slowAddress: string
let base: Record<string, unknown>
let addresses: { blue: string; green: string }

const WINDOW = '20s'

beforeAll(async () => {
  if (!hasPrometheus) return
  sb = await startSandbox()
  base = parse(readFileSync(sb.config, 'utf8')) as Record<string, unknown>
  const targets = base.targets as Record<'blue' | 'green', { upstream: string }>
  addresses = { blue: targets.blue.upstream, green: targets.green.upstream }
  const port = await freePort()
  slowAddress = `127.0.0.1:${port}`
  slow = spawn(
    process.execPath,
    [
      CLI,
      'sandbox',
      'app',
      '--port',
      String(port),
      '--environment',
      'green',
      '--version',
      'v9',
      '--delay-ms',
      '6000'
    ],
    { stdio: 'ignore' }
  )
  prom = await startPrometheus([addresses.blue, addresses.green, slowAddress])
})

afterAll(async () => {
  if (!hasPrometheus) return
  slow?.kill('SIGKILL')
  await prom?.stop()
  await sb?.down()
})

/** A service whose config points at the Prometheus, every query scoped to one instance. */
function serviceFor(instance: string): Service {
  const sel = `instance="${instance}"`
  const config = {
    ...base,
    prometheus: {
      url: prom.url,
      window: WINDOW,
      errorRateQuery:
        `100 * (sum(rate(http_requests_total{${sel},status=~"5.."}[${WINDOW}])) or vector(0)) ` +
        `/ sum(rate(http_requests_total{${sel}}[${WINDOW}]))`,
      p95Query: `histogram_quantile(0.95, sum(rate(http_request_duration_seconds_bucket{${sel}}[${WINDOW}])) by (le))`,
      requestCountQuery: `sum(increase(http_requests_total{${sel}}[${WINDOW}]))`
    },
    assess: { rounds: 3, failureLimit: 2, intervalSeconds: 1, minRequests: 20 }
  }
  const file = path.join(sb.dir, 'backout-prometheus.yml')
  writeFileSync(file, stringify(config))
  return createService(loadConfig(file), new MemoryLogger())
}

/** Requests to url, `concurrency` at a time, until stop() — the traffic Prometheus sees. */
function traffic(url: string, concurrency: number): { stop(): Promise<void> } {
  let running = true
  const worker = async (): Promise<void> => {
    while (running)
      await fetch(url, { signal: AbortSignal.timeout(15_000) }).then(
        r => r.text(),
        () => ''
      )
  }
  const workers = Array.from({ length: concurrency }, () => worker())
  return {
    async stop() {
      running = false
      await Promise.all(workers)
    }
  }
}

/** Waits until Prometheus has seen at least n requests at the instance in the window. */
async function awaitRequests(instance: string, n: number): Promise<void> {
  const result = await createPrometheus({ url: prom.url }).waitForSeries(
    `sum(increase(http_requests_total{instance="${instance}"}[${WINDOW}]))`,
    { timeoutMs: 45_000, intervalMs: 500, until: s => (s[0]?.value ?? 0) >= n }
  )
  if (isInconclusive(result))
    throw new Error(`Prometheus never saw ${n} requests at ${instance}: ${result.why}`)
}

run('assess on a real Prometheus', () => {
  test('no traffic: Prometheus has nothing to say, so assess samples through nginx and says so', async () => {
    await createPrometheus({ url: prom.url }).waitForSeries(`up{instance="${addresses.green}"} == 1`, {
      timeoutMs: 20_000
    })
    const r = await assess(serviceFor(addresses.green))
    // Green answers 30 % of requests with 500: measured by the sample, not "inconclusive / monitor".
    expect(r.trafficSource).toMatch(
      /sampled through nginx .* Prometheus was not used: (only \d+ requests in 20s|request count: the query returned no series)/
    )
    expect(r.measurements.errorRatePercent as number).toBeGreaterThan(10)
    expect(r.assessment.severity).toBe('HIGH')
    expect(r.assessment.shouldRollback).toBe(true)
    expect(r.recommendation).toMatchObject({ action: 'rollback', level: 1 })
  })

  test('Prometheus unreachable: the same verdict as without it, by sampling through nginx', async () => {
    const config = parse(readFileSync(sb.config, 'utf8')) as Record<string, unknown>
    const file = path.join(sb.dir, 'backout-prometheus-down.yml')
    writeFileSync(
      file,
      stringify({ ...config, prometheus: { url: `http://127.0.0.1:${await freePort()}`, window: WINDOW } })
    )
    const r = await assess(createService(loadConfig(file), new MemoryLogger()))
    expect(r.trafficSource).toMatch(/Prometheus was not used: request count: request to \S+ failed/)
    expect(r.assessment.severity).toBe('HIGH')
    expect(r.recommendation).toMatchObject({ action: 'rollback', level: 1 })
  })

  test('green live with ~30 % errors is HIGH: roll back, Level 1 (blue is healthy)', async () => {
    const load = traffic(`${sb.nginxUrl}/api/rooms`, 20)
    try {
      await awaitRequests(addresses.green, 40)
      const r = await assess(serviceFor(addresses.green))
      const rate = r.measurements.errorRatePercent
      expect(typeof rate).toBe('number')
      expect(rate as number).toBeGreaterThan(10)
      expect(r.assessment.severity).toBe((rate as number) > 50 ? 'CRITICAL' : 'HIGH')
      expect(r.assessment.shouldRollback).toBe(true)
      expect(r.assessment.recommendedLevel).toBe(1)
      expect(r.assessment.reasons[0]!.code).toMatch(/^error_rate_(high|critical)$/)
    } finally {
      await load.stop()
    }
  })

  test('a p95 of 6 s is HIGH: the tree says roll back', async () => {
    const load = traffic(`http://${slowAddress}/api/rooms`, 30)
    try {
      await awaitRequests(slowAddress, 25)
      const r = await assess(serviceFor(slowAddress))
      expect(r.measurements.p95Seconds as number).toBeGreaterThan(5)
      expect(r.assessment.severity).toBe('HIGH')
      expect(r.assessment.shouldRollback).toBe(true)
      expect(r.assessment.reasons[0]!.code).toBe('response_time_high')
    } finally {
      await load.stop()
    }
  })

  test('a corruption marker is CRITICAL with Level 3', async () => {
    const marker = path.join(sb.dir, 'data/godot/corruption_detected')
    writeFileSync(marker, 'x')
    try {
      const r = await assess(serviceFor(addresses.green), { rounds: 1, failureLimit: 1 })
      expect(r.assessment.severity).toBe('CRITICAL')
      expect(r.assessment.recommendedLevel).toBe(3)
      expect(r.assessment.reasons[0]!.code).toBe('data_corruption')
    } finally {
      rmSync(marker)
    }
  })

  test('healthy after Level 1 (blue live, traffic on blue) is LOW', async () => {
    const service = serviceFor(addresses.blue)
    const { error } = await rollback(service, {
      level: 1,
      reason: 'test',
      dryRun: false,
      confirm: () => Promise.resolve(true)
    })
    expect(error).toBeUndefined()
    const load = traffic(`${sb.nginxUrl}/api/rooms`, 4)
    try {
      await awaitRequests(addresses.blue, 40)
      const r = await assess(service)
      expect(r.assessment.severity).toBe('LOW')
      expect(r.assessment.shouldRollback).toBe(false)
      expect(r.measurements.errorRatePercent).toBe(0)
      expect(r.measurements.failedHealthChecks).toBe(0)
      // validate reads the error rate and p95 from Prometheus when it is configured
      const checks = (await validate(service, { thorough: false })).checks
      expect(checks.find(c => c.name === 'error rate')).toMatchObject({ status: 'pass' })
      expect(checks.find(c => c.name === 'error rate')!.measured).toMatch(
        /^0\.0% over \d+ requests \(Prometheus, 20s\)$/
      )
      expect(checks.find(c => c.name === 'p95 latency')!.measured).toMatch(/\(Prometheus, 20s\)$/)
    } finally {
      await load.stop()
    }
  })

  test('the service down is CRITICAL: roll back now', async () => {
    process.kill(readPid(path.join(sb.dir, 'run/blue.pid'))!, 'SIGKILL')
    for (let i = 0; i < 50 && (await listening(addresses.blue)); i++)
      await new Promise(r => setTimeout(r, 100))
    const r = await assess(serviceFor(addresses.blue))
    expect(r.measurements.serviceUp).toBe(false)
    expect(r.assessment.severity).toBe('CRITICAL')
    expect(r.assessment.shouldRollback).toBe(true)
    expect(r.assessment.act).toBe('now')
    expect(r.probes.find(p => p.name === 'ports listening')!.value).toMatch(/blue \S+ CLOSED/)
  })
})
