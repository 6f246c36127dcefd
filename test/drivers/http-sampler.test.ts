import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { nearestRank, sampleHttp, type SampleResult } from '../../src/drivers/http-sampler'
import { isInconclusive } from '../../src/core/severity'
import { UserError } from '../../src/core/errors'
import { startMetricsApp, type MetricsApp } from '../support/metrics-app'
import { freePort } from '../support/ports'

function measured(result: SampleResult): Extract<SampleResult, { status: 'ok' }> {
  if (isInconclusive(result)) throw new Error(`expected a measurement, got: ${result.why}`)
  return result
}

describe('sampleHttp against the metrics app on loopback', () => {
  let app: MetricsApp

  beforeAll(async () => {
    app = await startMetricsApp()
  })
  afterAll(async () => {
    await app.stop()
  })

  it('counts 5xx and computes the error rate', async () => {
    app.setBehaviour({ errorShare: 0.2, delayMs: 0 })
    const result = measured(await sampleHttp({ url: `${app.url}/api`, requests: 100, concurrency: 4 }))
    expect(result).toMatchObject({
      attempted: 100,
      completed: 100,
      ok: 80,
      serverErrors: 20,
      errors: 0,
      cut: 0
    })
    expect(result.errorRatePercent).toBe(20)
  })

  it('reports the p95 latency of the answers', async () => {
    app.setBehaviour({ errorShare: 0, delayMs: 100 })
    const result = measured(await sampleHttp({ url: `${app.url}/api`, requests: 20, concurrency: 8 }))
    expect(result.errorRatePercent).toBe(0)
    expect(result.p95Seconds).toBeGreaterThanOrEqual(0.099)
  })

  it('is inconclusive, not 0 %, when nothing answers', async () => {
    const url = `http://127.0.0.1:${await freePort()}/api`
    const result = await sampleHttp({ url, requests: 10, minCompleted: 5 })
    expect(result).toMatchObject({ status: 'inconclusive', attempted: 10, completed: 0, errors: 10 })
    expect(isInconclusive(result) && result.why).toMatch(/only 0 of 10 requests .* completed.*ECONNREFUSED/)
  })

  it('counts requests past their deadline as slow (latency = the deadline), not as missing data', async () => {
    app.setBehaviour({ errorShare: 0, delayMs: 2000 })
    const result = measured(
      await sampleHttp({
        url: `${app.url}/api`,
        requests: 4,
        requestTimeoutMs: 100,
        minCompleted: 1
      })
    )
    expect(result).toMatchObject({ status: 'ok', errors: 0, timedOut: 4, latencySamples: 4, requests: 0 })
    expect(result.p95Seconds).toBe(0.1)
  })

  it('stops at the time budget and says so', async () => {
    app.setBehaviour({ errorShare: 0, delayMs: 2000 })
    const result = await sampleHttp({ url: `${app.url}/api`, requests: 50, concurrency: 2, budgetMs: 200 })
    expect(result).toMatchObject({ status: 'inconclusive', attempted: 2, completed: 0, errors: 0, cut: 2 })
    expect(isInconclusive(result) && result.why).toMatch(/before the time budget ran out/)
  })

  it('refuses unbounded settings', async () => {
    await expect(sampleHttp({ url: app.url, requests: 0 })).rejects.toThrow(UserError)
    await expect(sampleHttp({ url: app.url, requests: 10, concurrency: 100_000 })).rejects.toThrow(
      /concurrency/
    )
  })
})

describe('sampleHttp through a real nginx', () => {
  let app: MetricsApp
  let root: string
  let nginx: ChildProcess
  let nginxUrl: string
  let deadBackendUrl: string

  beforeAll(async () => {
    app = await startMetricsApp({ errorShare: 0.12 })
    root = mkdtempSync(path.join(tmpdir(), 'backout-sampler-nginx-'))
    mkdirSync(path.join(root, 'tmp'))
    const [port, deadPort] = [await freePort(), await freePort()]
    nginxUrl = `http://127.0.0.1:${port}`
    deadBackendUrl = `${nginxUrl}/dead/`
    const isRoot = process.getuid?.() === 0
    writeFileSync(
      path.join(root, 'nginx.conf'),
      `${isRoot ? 'user root root;\n' : ''}worker_processes 1;
pid ${root}/nginx.pid;
error_log ${root}/error.log crit;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${root}/tmp/body;
  proxy_temp_path ${root}/tmp/proxy;
  fastcgi_temp_path ${root}/tmp/fastcgi;
  uwsgi_temp_path ${root}/tmp/uwsgi;
  scgi_temp_path ${root}/tmp/scgi;
  server {
    listen 127.0.0.1:${port};
    location /dead/ { proxy_pass http://127.0.0.1:${deadPort}; }
    location / { proxy_pass http://${app.target}; }
  }
}
`
    )
    nginx = spawn('nginx', ['-p', root, '-c', path.join(root, 'nginx.conf'), '-g', 'daemon off;'], {
      stdio: 'ignore'
    })
    for (let i = 0; i < 100; i++) {
      const up = await fetch(`${nginxUrl}/metrics`).then(
        r => r.ok,
        () => false
      )
      if (up) return
      await new Promise(r => setTimeout(r, 50))
    }
    throw new Error(`nginx did not come up on ${nginxUrl}`)
  })

  afterAll(async () => {
    if (nginx?.pid !== undefined && nginx.exitCode === null) {
      const exited = new Promise(r => nginx.once('exit', r))
      process.kill(nginx.pid, 'SIGTERM')
      await exited
    }
    await app?.stop()
    rmSync(root, { recursive: true, force: true })
  })

  it('measures the backend’s 12 % errors as users see them', async () => {
    const result = measured(await sampleHttp({ url: `${nginxUrl}/api`, requests: 100 }))
    expect(result).toMatchObject({ completed: 100, serverErrors: 12, errorRatePercent: 12 })
  })

  it('a dead backend behind nginx is 100 % 5xx (502), a conclusive answer', async () => {
    const result = measured(await sampleHttp({ url: deadBackendUrl, requests: 20 }))
    expect(result).toMatchObject({ completed: 20, serverErrors: 20, errorRatePercent: 100 })
  })
})

describe('nearestRank', () => {
  it('takes the smallest value with at least q of the values at or below it', () => {
    const values = Array.from({ length: 100 }, (_, i) => i + 1)
    expect(nearestRank(values, 0.95)).toBe(95)
    expect(nearestRank([3, 1, 2], 0.95)).toBe(3)
    expect(nearestRank([7], 0.5)).toBe(7)
    expect(() => nearestRank([], 0.95)).toThrow()
  })
})
