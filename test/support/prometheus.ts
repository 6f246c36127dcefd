import { spawn } from 'node:child_process'
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { freePort } from './ports'

export const PROMETHEUS_BIN = '/usr/bin/prometheus'
export const hasPrometheus = existsSync(PROMETHEUS_BIN)

export interface TestPrometheus {
  url: string
  pid: number
  logFile: string
  stop(): Promise<void>
}

/**
 * A real Prometheus, a child of this process, scraping `targets` (host:port) every second, with its
 * config and TSDB in a temp dir that stop() removes. Resolves once /-/ready answers; the first scrape
 * lands a few seconds later, so poll for series rather than sleeping.
 */
export async function startPrometheus(targets: readonly string[]): Promise<TestPrometheus> {
  const root = mkdtempSync(path.join(tmpdir(), 'backout-prom-'))
  const configFile = path.join(root, 'prometheus.yml')
  const logFile = path.join(root, 'prometheus.log')
  writeFileSync(
    configFile,
    [
      'global:',
      '  scrape_interval: 1s',
      '  evaluation_interval: 1s',
      'scrape_configs:',
      '  - job_name: app',
      '    static_configs:',
      `      - targets: [${targets.map(t => `'${t}'`).join(', ')}]`,
      ''
    ].join('\n')
  )
  const port = await freePort()
  const fd = openSync(logFile, 'a')
  const child = spawn(
    PROMETHEUS_BIN,
    [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${path.join(root, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`
    ],
    { stdio: ['ignore', fd, fd] }
  )
  closeSync(fd)
  const pid = child.pid
  if (pid === undefined) throw new Error(`could not start ${PROMETHEUS_BIN}`)
  let exited = false
  const exit = new Promise<void>(resolve =>
    child.once('exit', () => {
      exited = true
      resolve()
    })
  )

  const stop = async (): Promise<void> => {
    if (!exited) {
      process.kill(pid, 'SIGTERM')
      const killer = setTimeout(() => !exited && process.kill(pid, 'SIGKILL'), 5000)
      await exit
      clearTimeout(killer)
    }
    rmSync(root, { recursive: true, force: true })
  }

  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 20_000
  while (Date.now() < deadline && !exited) {
    const ready = await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(1000) }).then(
      r => r.ok,
      () => false
    )
    if (ready) return { url, pid, logFile, stop }
    await new Promise(r => setTimeout(r, 100))
  }
  const log = readFileSync(logFile, 'utf8').trim().split('\n').slice(-10).join('\n')
  await stop()
  throw new Error(`Prometheus on ${url} ${exited ? 'exited' : 'was not ready within 20 s'}:\n${log}`)
}
