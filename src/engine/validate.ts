import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs'
import path from 'node:path'
import type { Color, Config } from '../core/config'
import { messageOf } from '../core/errors'
import { dockerFor, type ComposeRuntime } from '../drivers/compose'
import { databasePing, integrityCheck, tableCounts } from '../drivers/database'
import { runCommand } from '../drivers/exec'
import { field, probe } from '../drivers/http'
import { sampleHttp } from '../drivers/http-sampler'
import { runningPid } from '../drivers/process'
import { readTraffic } from './monitor'
import { recordValidation } from './observations'
import { listening, nginxAddress, targetState } from './probes'
import { activeColor, answeredBy, probeThroughNginx, type Service } from './service'
import { sleep } from '../drivers/sleep'

export interface Check {
  name: string
  status: 'pass' | 'fail' | 'skip'
  measured: string
  threshold: string
}

export interface ValidationReport {
  passed: boolean
  checks: Check[]
}

export interface ValidateOptions {
  thorough: boolean
  /** Requests sampled through nginx for the error rate and p95 (default 40). */
  samples?: number
  /** Thorough: how long to monitor, seconds (default validate.durationSeconds; 0 skips monitoring). */
  durationSeconds?: number
  /** Thorough: pause between monitoring samples, seconds (default validate.intervalSeconds). */
  intervalSeconds?: number
}

const pass = (name: string, measured: string, threshold = ''): Check => ({
  name,
  status: 'pass',
  measured,
  threshold
})
const fail = (name: string, measured: string, threshold = ''): Check => ({
  name,
  status: 'fail',
  measured,
  threshold
})
const skip = (name: string, why: string): Check => ({ name, status: 'skip', measured: why, threshold: '' })
const verdict = (ok: boolean, name: string, measured: string, threshold = ''): Check =>
  ok ? pass(name, measured, threshold) : fail(name, measured, threshold)

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ): 100 on every mainstream Linux build. */
const USER_HZ = 100
/** Samples over the threshold in a row that make a breach "sustained" in monitoring. */
const SUSTAINED = 2
/** A log line counts as an error when it says ERROR (or level "error" in JSON logs). */
const ERROR_LINE = /\bERROR\b|"level":\s*"error"/

/** The last `n` lines of a file, reading at most its last 1 MiB. */
export function tailLines(file: string, n: number): string[] {
  const size = statSync(file).size
  const length = Math.min(size, 1024 * 1024)
  const buffer = Buffer.alloc(length)
  const fd = openSync(file, 'r')
  try {
    readSync(fd, buffer, 0, length, size - length)
  } finally {
    closeSync(fd)
  }
  const lines = buffer.toString('utf8').split('\n')
  if (lines[lines.length - 1] === '') lines.pop()
  return lines.slice(-n)
}

/** The log file the process runtime writes for a target (as createProcessRuntime names it). */
export function processLogFile(config: Config, color: Color): string | undefined {
  const p = config.targets[color].process
  if (!p) return undefined
  return p.logFile ?? path.join(config.state.dir, 'logs', `${config.service}-${color}.log`)
}

/** A target's recent log lines and those among them that are errors; undefined when there is no log to read. */
export async function recentLogErrors(
  service: Service,
  color: Color,
  lines: number
): Promise<{ source: string; read: number; errors: string[] } | undefined> {
  const { config, runtime } = service
  if (runtime.kind === 'compose' && 'containersJson' in runtime) {
    const containers = await (runtime as ComposeRuntime).containersJson(color)
    if (!containers.length) return undefined
    const docker = dockerFor(process.env)
    const all: string[] = []
    for (const c of containers) {
      const raw = await docker
        .getContainer(c.id)
        .logs({ stdout: true, stderr: true, tail: lines, follow: false })
      // Docker multiplexes stdout/stderr with an 8-byte header per frame; strip what is not text.
      all.push(...demux(raw).split('\n').filter(Boolean))
    }
    return {
      source: `docker logs of ${containers.map(c => c.name).join(', ')}`,
      read: all.length,
      errors: all.filter(l => ERROR_LINE.test(l))
    }
  }
  const file = processLogFile(config, color)
  if (!file || !existsSync(file)) return undefined
  const tail = tailLines(file, lines)
  return { source: file, read: tail.length, errors: tail.filter(l => ERROR_LINE.test(l)) }
}

function demux(raw: Buffer): string {
  const out: Buffer[] = []
  let i = 0
  while (i + 8 <= raw.length && (raw[i] === 1 || raw[i] === 2) && raw[i + 1] === 0) {
    const size = raw.readUInt32BE(i + 4)
    out.push(raw.subarray(i + 8, i + 8 + size))
    i += 8 + size
  }
  return i === 0 ? raw.toString('utf8') : Buffer.concat(out).toString('utf8')
}

/** Resident memory (MB) and CPU (% of one core over `windowMs`) of a process, from /proc. */
export async function processUsage(
  pid: number,
  windowMs = 1000
): Promise<{ rssMB: number; cpuPercent: number }> {
  const ticks = (): number => {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    // fields[0] is field 3 (state): utime is field 14, stime field 15.
    return Number(fields[11]) + Number(fields[12])
  }
  const before = ticks()
  const started = performance.now()
  await sleep(windowMs)
  const after = ticks()
  const seconds = (performance.now() - started) / 1000
  const rss = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return {
    rssMB: rss ? Number(rss[1]) / 1024 : 0,
    cpuPercent: ((after - before) / USER_HZ / seconds) * 100
  }
}

interface DockerStats {
  memory_stats?: { usage?: number }
  cpu_stats?: { cpu_usage?: { total_usage?: number }; system_cpu_usage?: number; online_cpus?: number }
  precpu_stats?: { cpu_usage?: { total_usage?: number }; system_cpu_usage?: number }
}

/** Memory and CPU of a target: /proc for the process runtime, `docker stats` for compose. */
async function targetUsage(
  service: Service,
  color: Color
): Promise<{ rssMB: number; cpuPercent: number; of: string }> {
  const { config, runtime } = service
  if (runtime.kind === 'compose' && 'containersJson' in runtime) {
    const containers = await (runtime as ComposeRuntime).containersJson(color)
    const docker = dockerFor(process.env)
    let rssMB = 0
    let cpuPercent = 0
    for (const c of containers) {
      const s = (await docker.getContainer(c.id).stats({ stream: false })) as DockerStats
      rssMB += (s.memory_stats?.usage ?? 0) / 1024 / 1024
      const cpu = (s.cpu_stats?.cpu_usage?.total_usage ?? 0) - (s.precpu_stats?.cpu_usage?.total_usage ?? 0)
      const system = (s.cpu_stats?.system_cpu_usage ?? 0) - (s.precpu_stats?.system_cpu_usage ?? 0)
      if (system > 0) cpuPercent += (cpu / system) * (s.cpu_stats?.online_cpus ?? 1) * 100
    }
    return { rssMB, cpuPercent, of: `${containers.length} container(s)` }
  }
  const p = config.targets[color].process
  const pid = p ? runningPid(p.pidFile) : undefined
  if (pid === undefined) throw new Error(`${color} is not running`)
  return { ...(await processUsage(pid)), of: `pid ${pid}` }
}

/**
 * Thorough validation's extended monitoring: samples error rate and p95 through nginx every interval for
 * `seconds`, printing a progress line per sample, and fails on the first sustained breach — two samples in a
 * row over a threshold (an inconclusive sample counts as over: no data is not health).
 */
async function monitor(service: Service, seconds: number, intervalSeconds: number): Promise<Check> {
  const { config, log } = service
  const th = config.thresholds.validate
  const name = 'monitoring'
  const threshold = `no ${SUSTAINED} samples in a row with error rate ≥ ${th.errorRatePercent}% or p95 ≥ ${th.p95Ms} ms`
  if (seconds <= 0) return skip(name, 'duration 0')
  const started = Date.now()
  let samples = 0
  let streak = 0
  for (;;) {
    const s = await sampleHttp({
      url: `${config.nginx.url}/`,
      requests: 10,
      concurrency: 5,
      budgetMs: 15_000,
      minCompleted: 10
    })
    samples++
    const elapsed = Math.round((Date.now() - started) / 1000)
    let breach: string | undefined
    let shown: string
    if (s.status !== 'ok') {
      shown = `inconclusive (${s.why})`
      breach = shown
    } else {
      const p95 = Math.round(s.p95Seconds * 1000)
      shown = `error rate ${s.errorRatePercent.toFixed(1)}%, p95 ${p95} ms`
      if (s.errorRatePercent >= th.errorRatePercent) breach = `error rate ${s.errorRatePercent.toFixed(1)}%`
      else if (p95 >= th.p95Ms) breach = `p95 ${p95} ms`
    }
    streak = breach ? streak + 1 : 0
    log.info(
      `monitoring ${elapsed}/${seconds} s: sample ${samples}: ${shown}${breach ? ` — over (${streak}/${SUSTAINED})` : ''}`
    )
    if (streak >= SUSTAINED)
      return fail(name, `sustained breach at ${elapsed} s (sample ${samples}): ${breach}`, threshold)
    if (Date.now() - started >= seconds * 1000) break
    await sleep(intervalSeconds * 1000)
  }
  return pass(name, `${samples} samples over ${seconds} s, no sustained breach`, threshold)
}

/**
 * The runbook's validation: quick by default (targets, HTTP API, database, data integrity, network ports,
 * resource usage, log errors, error rate and latency); thorough adds the smoke tests, the extra (debug) ports
 * and monitoring for a duration. Each check reports pass / fail / skip with its measured value and threshold.
 * Checks run in parallel; monitoring runs last, after them.
 */
export async function validate(service: Service, options: ValidateOptions): Promise<ValidationReport> {
  const { config } = service
  const th = config.thresholds.validate
  const v = config.validate
  const db = config.database
  const active = activeColor(service)

  const checks = await Promise.all([
    (async (): Promise<Check> => {
      const name = 'live target running'
      if (!active) return fail(name, `nginx points at ${service.nginx.activeUpstream() ?? 'nothing'}`)
      const state = await targetState(service, active).catch((e: unknown) => ({
        running: false,
        healthy: false,
        detail: messageOf(e)
      }))
      return verdict(
        state.healthy,
        name,
        `${active}: ${state.detail}`,
        config.runtime === 'compose' ? 'running and healthy' : 'running'
      )
    })(),
    (async (): Promise<Check> => {
      const res = await probeThroughNginx(config)
      const by = answeredBy(config, res)
      return res.ok
        ? pass(
            `HTTP ${config.health.path}`,
            `HTTP ${res.status} from ${by ?? 'unknown'} in ${Math.round(res.latencyMs)} ms`,
            '2xx'
          )
        : fail(`HTTP ${config.health.path}`, res.error ?? `HTTP ${res.status}`, '2xx')
    })(),
    (async (): Promise<Check> => {
      const res = await probe(config.nginx.url + config.health.statusPath, config.health.timeoutMs)
      const ready = field(res.json, 'overall_ready')
      return ready === true
        ? pass(`HTTP ${config.health.statusPath}`, 'overall_ready: true', 'overall_ready: true')
        : fail(
            `HTTP ${config.health.statusPath}`,
            res.error ?? `HTTP ${res.status}, overall_ready: ${JSON.stringify(ready)}`,
            'overall_ready: true'
          )
    })(),
    (async (): Promise<Check> => {
      if (!db) return skip('database connection', 'no database configured')
      const ping = await databasePing(db)
      return verdict(ping.ok, 'database connection', ping.detail)
    })(),
    (async (): Promise<Check> => {
      if (!db) return skip('database integrity', 'no database configured')
      const r = await integrityCheck(db).catch((e: unknown) => ({ ok: false, detail: String(e) }))
      return verdict(r.ok, 'database integrity', r.detail)
    })(),
    (async (): Promise<Check> => {
      if (!db || !db.criticalTables.length) return skip('critical data', 'no criticalTables configured')
      const baseline = service.store.list().find(b => b.manifest.rowCounts)?.manifest.rowCounts
      const counts = await tableCounts(db, db.criticalTables).catch(() => undefined)
      if (!counts) return fail('critical data', 'could not count rows')
      const shown = Object.entries(counts)
        .map(([t, n]) => `${t}=${n}`)
        .join(', ')
      const missing = Object.entries(counts).filter(([, n]) => n === 'missing')
      if (missing.length) return fail('critical data', shown, 'every critical table present')
      const lost = baseline
        ? Object.entries(counts).filter(
            ([t, n]) => typeof n === 'number' && baseline[t] !== undefined && n < baseline[t]
          )
        : []
      if (lost.length && baseline)
        return fail(
          'critical data',
          shown,
          `no fewer rows than the last backup (${lost.map(([t]) => `${t}=${baseline[t]}`).join(', ')})`
        )
      return pass(
        'critical data',
        shown,
        baseline ? 'no fewer rows than the last backup' : 'every critical table present'
      )
    })(),
    Promise.resolve(
      !config.corruptionMarker
        ? skip('no corruption marker', 'no corruptionMarker configured')
        : existsSync(config.corruptionMarker)
          ? fail('no corruption marker', `${config.corruptionMarker} exists`, 'absent')
          : pass('no corruption marker', 'absent', 'absent')
    ),
    (async (): Promise<Check> => {
      const ports = [
        { name: 'nginx', address: nginxAddress(config) },
        ...(active ? [{ name: active, address: config.targets[active].upstream }] : [])
      ]
      const open = await Promise.all(ports.map(async p => ({ ...p, open: await listening(p.address) })))
      const shown = open.map(p => `${p.name} ${p.address} ${p.open ? 'listening' : 'CLOSED'}`).join(', ')
      return verdict(
        Boolean(active) && open.every(p => p.open),
        'network ports',
        active ? shown : `${shown}; nginx points at neither target`,
        'nginx and the live target listening'
      )
    })(),
    (async (): Promise<Check> => {
      const name = 'resource usage'
      const threshold = `RSS < ${v.maxRssMB} MB, CPU < ${v.maxCpuPercent}%`
      if (!active) return skip(name, 'no live target')
      try {
        const u = await targetUsage(service, active)
        return verdict(
          u.rssMB < v.maxRssMB && u.cpuPercent < v.maxCpuPercent,
          name,
          `${active} (${u.of}): RSS ${u.rssMB.toFixed(1)} MB, CPU ${u.cpuPercent.toFixed(1)}%`,
          threshold
        )
      } catch (e) {
        return fail(name, `cannot measure: ${messageOf(e)}`, threshold)
      }
    })(),
    (async (): Promise<Check> => {
      const name = 'recent log errors'
      const threshold = `≤ ${v.maxLogErrors} ERROR lines in the last ${v.logLines}`
      if (!active) return skip(name, 'no live target')
      try {
        const r = await recentLogErrors(service, active, v.logLines)
        if (!r) return skip(name, `no log to read for ${active} (set targets.${active}.process.logFile)`)
        const last = r.errors[r.errors.length - 1]
        return verdict(
          r.errors.length <= v.maxLogErrors,
          name,
          `${r.errors.length} in the last ${r.read} lines of ${r.source}${last ? `; last: ${last.slice(0, 160)}` : ''}`,
          threshold
        )
      } catch (e) {
        return fail(name, `cannot read the log: ${messageOf(e)}`, threshold)
      }
    })(),
    (async (): Promise<Check[]> => {
      if (config.prometheus) {
        // Prometheus when it is configured and has traffic in its window; else a sample through nginx.
        const r = await readTraffic(service, { samples: options.samples ?? 40 })
        const from =
          r.source === 'prometheus'
            ? `Prometheus, ${config.prometheus.window}`
            : `sampled through nginx${r.why ? `; ${r.why}` : ''}`
        if (r.errorRatePercent === undefined || r.p95Seconds === undefined) {
          const why = `inconclusive: ${r.why ?? 'no answer'} (${from})`
          return [
            fail('error rate', why, `< ${th.errorRatePercent}%`),
            fail('p95 latency', why, `< ${th.p95Ms} ms`)
          ]
        }
        const p95 = Math.round(r.p95Seconds * 1000)
        return [
          verdict(
            r.errorRatePercent < th.errorRatePercent,
            'error rate',
            `${r.errorRatePercent.toFixed(1)}% over ${r.requests} requests (${from})`,
            `< ${th.errorRatePercent}%`
          ),
          verdict(p95 < th.p95Ms, 'p95 latency', `${p95} ms (${from})`, `< ${th.p95Ms} ms`)
        ]
      }
      const sample = await sampleHttp({
        url: `${config.nginx.url}/`,
        requests: options.samples ?? 40,
        concurrency: 8,
        budgetMs: 20_000
      })
      if (sample.status !== 'ok') {
        const why = `inconclusive: ${sample.why}`
        return [
          fail('error rate', why, `< ${th.errorRatePercent}%`),
          fail('p95 latency', why, `< ${th.p95Ms} ms`)
        ]
      }
      const rate = sample.errorRatePercent
      const p95 = Math.round(sample.p95Seconds * 1000)
      const n = `over ${sample.completed + sample.errors} requests`
      return [
        verdict(
          rate < th.errorRatePercent,
          'error rate',
          `${rate.toFixed(1)}% ${n}`,
          `< ${th.errorRatePercent}%`
        ),
        verdict(p95 < th.p95Ms, 'p95 latency', `${p95} ms`, `< ${th.p95Ms} ms`)
      ]
    })(),
    (async (): Promise<Check> => {
      if (!options.thorough) return skip('smoke tests', 'quick validation (use --thorough)')
      if (!config.smokeTest) return skip('smoke tests', 'no smokeTest configured')
      const res = await runCommand(config.smokeTest, { timeoutMs: 300_000 })
      const tail = (res.stderr || res.stdout).trim().split('\n').slice(-1)[0] ?? ''
      return verdict(
        res.code === 0,
        'smoke tests',
        res.code === 0 ? 'exit 0' : `exit ${res.code}: ${tail}`,
        'exit 0'
      )
    })(),
    (async (): Promise<Check> => {
      const name = 'debug ports'
      if (!options.thorough) return skip(name, 'quick validation (use --thorough)')
      if (!v.debugPorts.length) return skip(name, 'no validate.debugPorts configured')
      const open = await Promise.all(v.debugPorts.map(async a => ({ a, open: await listening(a) })))
      return verdict(
        open.every(p => p.open),
        name,
        open.map(p => `${p.a} ${p.open ? 'listening' : 'CLOSED'}`).join(', '),
        'every debug port listening'
      )
    })()
  ])
  const flat = checks.flat()
  flat.push(
    options.thorough
      ? await monitor(
          service,
          options.durationSeconds ?? v.durationSeconds,
          options.intervalSeconds ?? v.intervalSeconds
        )
      : skip('monitoring', 'quick validation (use --thorough)')
  )
  const report = { passed: flat.every(c => c.status !== 'fail'), checks: flat }
  const measured = (name: string): string | undefined => {
    const c = flat.find(x => x.name === name)
    return c && c.status !== 'skip' && !c.measured.startsWith('inconclusive') ? c.measured : undefined
  }
  try {
    recordValidation(config, {
      at: new Date().toISOString(),
      passed: report.passed,
      errorRate: measured('error rate'),
      p95: measured('p95 latency')
    })
  } catch (e) {
    service.log.warn(`could not record the validation in ${config.state.dir}: ${messageOf(e)}`)
  }
  return report
}

export function checksMarkdown(report: ValidationReport): string {
  const icon = { pass: '✅', fail: '❌', skip: '⏭️' }
  return [
    `## ${report.passed ? '✅' : '❌'} backout validate: ${report.passed ? 'passed' : 'failed'}`,
    '',
    '| Check | Result | Measured | Threshold |',
    '|---|---|---|---|',
    ...report.checks.map(
      c =>
        `| ${c.name} | ${icon[c.status]} ${c.status} | ${c.measured.replace(/\|/g, '\\|')} | ${c.threshold} |`
    )
  ].join('\n')
}

export function checksText(report: ValidationReport): string {
  const mark = { pass: '✓', fail: '✗', skip: '·' }
  const width = Math.max(...report.checks.map(c => c.name.length))
  return [
    `validate: ${report.passed ? 'passed' : 'FAILED'}`,
    ...report.checks.map(
      c =>
        `${mark[c.status]} ${c.name.padEnd(width)}  ${c.measured}${c.threshold ? `  (${c.threshold})` : ''}`
    )
  ].join('\n')
}
