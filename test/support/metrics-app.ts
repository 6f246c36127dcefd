import http from 'node:http'
import type { AddressInfo } from 'node:net'

/**
 * A tiny service for tests: every path but /metrics is "traffic", answered 500 for a configurable share of
 * requests (deterministically: exactly ⌊n·share⌋ of the first n fail) after a configurable delay; /metrics
 * exposes what it served in the Prometheus text format, the names the default queries use.
 */
export interface Behaviour {
  /** Share of traffic answered 500, 0..1. */
  errorShare: number
  /** Delay before each traffic answer, ms. */
  delayMs: number
}

export interface MetricsApp {
  url: string
  /** host:port, as a Prometheus target. */
  target: string
  served(): { ok: number; failed: number }
  setBehaviour(behaviour: Partial<Behaviour>): void
  stop(): Promise<void>
}

export const BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10] as const

export async function startMetricsApp(initial: Partial<Behaviour> = {}): Promise<MetricsApp> {
  const behaviour: Behaviour = { errorShare: 0, delayMs: 0, ...initial }
  const byStatus = { '200': 0, '500': 0 }
  const buckets = BUCKETS.map(() => 0)
  let observed = 0
  let sum = 0
  let requests = 0
  const pending = new Set<NodeJS.Timeout>()

  function observe(seconds: number): void {
    BUCKETS.forEach((le, i) => {
      if (seconds <= le) buckets[i]!++
    })
    observed++
    sum += seconds
  }

  function exposition(): string {
    return [
      '# HELP http_requests_total Requests served, by status.',
      '# TYPE http_requests_total counter',
      ...Object.entries(byStatus).map(([status, n]) => `http_requests_total{status="${status}"} ${n}`),
      '# HELP http_request_duration_seconds Request latency.',
      '# TYPE http_request_duration_seconds histogram',
      ...BUCKETS.map((le, i) => `http_request_duration_seconds_bucket{le="${le}"} ${buckets[i]}`),
      `http_request_duration_seconds_bucket{le="+Inf"} ${observed}`,
      `http_request_duration_seconds_sum ${sum}`,
      `http_request_duration_seconds_count ${observed}`,
      ''
    ].join('\n')
  }

  const server = http.createServer((req, res) => {
    if (req.url === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' })
      res.end(exposition())
      return
    }
    const started = performance.now()
    const n = requests++
    const fail = Math.floor((n + 1) * behaviour.errorShare) > Math.floor(n * behaviour.errorShare)
    const timer = setTimeout(() => {
      pending.delete(timer)
      const status = fail ? 500 : 200
      byStatus[status === 500 ? '500' : '200']++
      observe((performance.now() - started) / 1000)
      res.writeHead(status, { 'content-type': 'application/json' })
      res.end(JSON.stringify(fail ? { error: 'internal error' } : { ok: true }))
    }, behaviour.delayMs)
    pending.add(timer)
  })

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    target: `127.0.0.1:${port}`,
    served: () => ({ ok: byStatus['200'], failed: byStatus['500'] }),
    setBehaviour(change) {
      Object.assign(behaviour, change)
    },
    stop: () =>
      new Promise<void>(resolve => {
        pending.forEach(clearTimeout)
        server.closeAllConnections()
        server.close(() => resolve())
      })
  }
}
