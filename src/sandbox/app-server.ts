import http from 'node:http'

/**
 * The sandbox's application: a small HTTP service in two versions. It answers /health and /status like
 * the runbook's services, exposes Prometheus metrics, and can fail a share of requests and answer slowly
 * (the bad green v2.5.0) on its API routes.
 */
export interface AppOptions {
  port: number
  host: string
  environment: string
  version: string
  /**
   * Share of API requests answered 500, 0..1 — deterministically: of the first n API requests exactly ⌊n·share⌋
   * fail, so a sample of a few hundred sees the share itself, not a random draw around it.
   */
  errorRate: number
  /** Extra latency of API requests, ms. */
  delayMs: number
}

const BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10]

export function startAppServer(options: AppOptions): Promise<http.Server> {
  const counts = new Map<string, number>()
  const buckets = BUCKETS.map(() => 0)
  let sum = 0
  let observed = 0
  let served = 0

  function observe(status: number, seconds: number): void {
    counts.set(String(status), (counts.get(String(status)) ?? 0) + 1)
    BUCKETS.forEach((le, i) => {
      if (seconds <= le) buckets[i]!++
    })
    sum += seconds
    observed++
  }

  function metrics(): string {
    const lines = [
      '# HELP http_requests_total Requests served, by status.',
      '# TYPE http_requests_total counter'
    ]
    for (const [status, n] of counts) lines.push(`http_requests_total{status="${status}"} ${n}`)
    lines.push(
      '# HELP http_request_duration_seconds Request latency.',
      '# TYPE http_request_duration_seconds histogram'
    )
    BUCKETS.forEach((le, i) => lines.push(`http_request_duration_seconds_bucket{le="${le}"} ${buckets[i]}`))
    lines.push(`http_request_duration_seconds_bucket{le="+Inf"} ${observed}`)
    lines.push(`http_request_duration_seconds_sum ${sum}`, `http_request_duration_seconds_count ${observed}`)
    lines.push(`app_info{environment="${options.environment}",version="${options.version}"} 1`)
    return lines.join('\n') + '\n'
  }

  const identity = { environment: options.environment, version: options.version }
  const server = http.createServer((req, res) => {
    const started = performance.now()
    const url = req.url ?? '/'
    const send = (status: number, body: unknown, type = 'application/json'): void => {
      const text = typeof body === 'string' ? body : JSON.stringify(body)
      res.writeHead(status, { 'content-type': type, 'x-backend': options.environment })
      res.end(text)
    }
    if (url === '/health') return send(200, { status: 'ok', ...identity })
    if (url === '/status')
      return send(200, {
        overall_ready: true,
        ...identity,
        uptime_seconds: Math.round(process.uptime()),
        served
      })
    if (url === '/metrics') return send(200, metrics(), 'text/plain; version=0.0.4')
    const n = served++
    const fail = Math.floor((n + 1) * options.errorRate) > Math.floor(n * options.errorRate)
    setTimeout(() => {
      const status = fail ? 500 : 200
      observe(status, (performance.now() - started) / 1000)
      send(status, fail ? { error: 'internal error', ...identity } : { ok: true, path: url, ...identity })
    }, options.delayMs)
  })
  server.keepAliveTimeout = 65_000
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port, options.host, () => resolve(server))
  })
}

/** Runs the app until SIGTERM/SIGINT, then closes gracefully (in-flight requests finish). */
export async function runAppServer(options: AppOptions): Promise<void> {
  const server = await startAppServer(options)
  process.stdout.write(
    `app ${options.environment} ${options.version} listening on ${options.host}:${options.port} ` +
      `(error rate ${options.errorRate}, delay ${options.delayMs} ms)\n`
  )
  const stop = (): void => {
    server.close(() => process.exit(0))
    // Keep-alive connections become idle as their in-flight requests finish: close them as they do.
    setInterval(() => server.closeIdleConnections(), 20).unref()
    setTimeout(() => {
      server.closeAllConnections()
      process.exit(0)
    }, 2000).unref()
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
}
