import { existsSync } from 'node:fs'
import net from 'node:net'
import type { Color, Config } from '../core/config'
import { messageOf } from '../core/errors'
import {
  aggregateSamples,
  classifySeverity,
  inconclusive,
  isInconclusive,
  resolveThresholds,
  type AggregateVerdict,
  type Assessment,
  type Measurements,
  type Reading,
  type Reason
} from '../core/severity'
import { formatBytes, freeSpace } from '../drivers/archive'
import { dockerFor, type ComposeRuntime } from '../drivers/compose'
import { databasePing } from '../drivers/database'
import { sampleHttp } from '../drivers/http-sampler'
import {
  createPrometheus,
  errorRatePercentQuery,
  p95SecondsQuery,
  requestCountQuery
} from '../drivers/prometheus'
import { activeColor, probeThroughNginx, targetReady, type Service } from './service'
import { retentionPlan } from './snapshot'
import { sleep } from '../drivers/sleep'

export interface Probe {
  name: string
  value: string
  ms: number
}

export interface AssessReport {
  assessment: Assessment
  measurements: Measurements
  probes: Probe[]
}

export interface AssessOptions {
  /** Requests per round through nginx when there is no Prometheus (default: assess.samples). */
  samples?: number
  /** Rounds before a verdict (default: assess.rounds). */
  rounds?: number
  /** Rounds over a threshold that make the verdict (default: assess.failureLimit). */
  failureLimit?: number
  /** Pause between rounds, ms (default: assess.intervalSeconds). */
  intervalMs?: number
}

/** Deadline of one probe that is not a sampling round. */
const PROBE_DEADLINE_MS = 10_000

/** Resolves to the work's value, or to onTimeout() when the deadline passes first. */
export async function withDeadline<T>(work: Promise<T>, ms: number, onTimeout: () => T): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<T>(resolve => {
    timer = setTimeout(() => resolve(onTimeout()), ms)
  })
  try {
    return await Promise.race([work, late])
  } finally {
    clearTimeout(timer)
  }
}

/** Whether something accepts TCP connections on host:port (connect, then close). */
export function listening(hostPort: string, timeoutMs = 1000): Promise<boolean> {
  const at = hostPort.lastIndexOf(':')
  const host = hostPort.slice(0, at).replace(/^\[|\]$/g, '')
  const port = Number(hostPort.slice(at + 1))
  return new Promise(resolve => {
    const socket = net.connect({ host, port })
    const done = (ok: boolean): void => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.once('connect', () => done(true))
    socket.once('error', () => done(false))
  })
}

/** The host:port nginx serves on, from nginx.url. */
export function nginxAddress(config: Config): string {
  const url = new URL(config.nginx.url)
  return `${url.hostname}:${url.port || (url.protocol === 'https:' ? '443' : '80')}`
}

/** Every port backout knows of, by what it is: nginx and both targets' upstreams. */
export function knownPorts(config: Config): { name: string; address: string }[] {
  return [
    { name: 'nginx', address: nginxAddress(config) },
    { name: 'blue', address: config.targets.blue.upstream },
    { name: 'green', address: config.targets.green.upstream }
  ]
}

/** One target's runtime state: process (PID) or compose (every container running and healthy). */
export async function targetState(
  service: Service,
  color: Color
): Promise<{ running: boolean; healthy: boolean; detail: string }> {
  const { runtime } = service
  if (runtime.kind === 'compose' && 'containersJson' in runtime) {
    const containers = await (runtime as ComposeRuntime).containersJson(color)
    if (!containers.length) return { running: false, healthy: false, detail: 'no containers' }
    const running = containers.every(c => c.state === 'running')
    const healthy = running && containers.every(c => c.health === 'healthy' || c.health === 'none')
    const detail = containers.map(c => `${c.name} ${c.state}${c.health !== 'none' ? ` (${c.health})` : ''}`)
    return { running, healthy, detail: detail.join(', ') }
  }
  const state = await runtime.state(color)
  return { running: state.running, healthy: state.running, detail: state.detail }
}

/** Whether the Docker daemon answers a ping; only meaningful for the compose runtime. */
export async function dockerDaemon(): Promise<{ ok: boolean; detail: string }> {
  try {
    await dockerFor(process.env).ping()
    return { ok: true, detail: 'answers' }
  } catch (e) {
    return {
      ok: false,
      detail: `not answering (${messageOf(e)}) — systemctl status docker; sudo systemctl restart docker`
    }
  }
}

/** Free disk under backups.dir, and what may be pruned when it runs short. */
export async function diskSpace(
  service: Service
): Promise<{ freeBytes: number; low: boolean; prunable: string[]; detail: string }> {
  const { config } = service
  const { freeBytes } = await freeSpace(config.backups.dir)
  const low = freeBytes < config.assess.minFreeDiskMB * 1024 * 1024
  let prunable: string[] = []
  try {
    const plan = retentionPlan(service)
    prunable = [...new Set([...plan.deleted, ...plan.prunable])]
  } catch {
    // no backups dir yet: nothing to prune
  }
  const detail =
    `${formatBytes(freeBytes)} free under ${config.backups.dir}` +
    (low
      ? ` (below ${config.assess.minFreeDiskMB} MB) — may be pruned: ` +
        (prunable.length
          ? `old backups beyond retention ${prunable.join(', ')} (rm -r ${config.backups.dir}/<id>)`
          : 'no backup (only the protected ones are left)') +
        (config.runtime === 'compose' ? '; unused Docker data (docker system prune -af)' : '')
      : '')
  return { freeBytes, low, prunable, detail }
}

interface TrafficRound {
  errorRatePercent: Reading<number>
  p95Seconds: Reading<number>
  requests: number
}

const showReading = (r: Reading<boolean | number> | undefined): string =>
  r === undefined
    ? 'not measured'
    : isInconclusive(r)
      ? `inconclusive: ${r.why}`
      : typeof r === 'number'
        ? String(Math.round(r * 1000) / 1000)
        : String(r)

const fixed = (r: Reading<number>, digits: number): string =>
  isInconclusive(r) ? `inconclusive (${r.why})` : r.toFixed(digits)

/**
 * Repeated readings of one number into one: inconclusive unless every round answered or the failures
 * (rounds over `bad`) reached the limit; otherwise the value that held in `failureLimit` rounds — the
 * failureLimit-th highest — so one spike is not a verdict and a sustained breach is.
 */
export function sustained(
  readings: readonly Reading<number>[],
  bad: (v: number) => boolean,
  failureLimit: number
): { value: Reading<number>; verdict: AggregateVerdict } {
  const verdict = aggregateSamples(
    readings.map(r => (isInconclusive(r) ? r : !bad(r))),
    { minSamples: readings.length, failureLimit }
  )
  if (verdict.verdict === 'inconclusive') {
    const first = readings.find(isInconclusive)
    return { value: inconclusive(`${verdict.why}${first ? ` (${first.why})` : ''}`), verdict }
  }
  const values = readings.filter((r): r is number => !isInconclusive(r)).sort((a, b) => b - a)
  return { value: values[Math.min(failureLimit, values.length) - 1]!, verdict }
}

/**
 * Measures the service — every probe in parallel, each with its own deadline — and classifies severity with
 * the runbook's decision tree. Service-up, error rate and p95 are taken in `rounds` rounds and aggregated with
 * the failure limit. No data is not health: a probe without an answer is inconclusive.
 */
export async function assess(service: Service, options: AssessOptions = {}): Promise<AssessReport> {
  const { config } = service
  const settings = config.assess
  const rounds = options.rounds ?? settings.rounds
  const failureLimit = Math.min(options.failureLimit ?? settings.failureLimit, rounds)
  const samples = options.samples ?? settings.samples
  const intervalMs = options.intervalMs ?? settings.intervalSeconds * 1000
  const thresholds = resolveThresholds({
    errorRatePercent: config.thresholds.errorRatePercent,
    responseTimeSeconds: config.thresholds.responseTimeSeconds,
    minRequests: settings.minRequests,
    minLatencySamples: settings.minRequests
  })
  const probes: Probe[] = []
  const active = activeColor(service)
  const previous = active === 'blue' ? 'green' : active === 'green' ? 'blue' : undefined

  const timed = async <T>(name: string, work: () => Promise<T>, show: (v: T) => string): Promise<T> => {
    const started = performance.now()
    const value = await work()
    probes.push({ name, value: show(value), ms: Math.round(performance.now() - started) })
    return value
  }
  const deadline = <T>(work: Promise<T>, onTimeout: () => T): Promise<T> =>
    withDeadline(work, PROBE_DEADLINE_MS, onTimeout)
  const late = `no answer within ${PROBE_DEADLINE_MS / 1000} s`

  const prom = config.prometheus
  const prometheus = prom ? createPrometheus({ url: prom.url }) : undefined
  const trafficRound = async (): Promise<TrafficRound> => {
    if (prom && prometheus) {
      const [rate, p95, count] = await Promise.all([
        prometheus.queryValue(prom.errorRateQuery ?? errorRatePercentQuery(prom.window)),
        prometheus.queryValue(prom.p95Query ?? p95SecondsQuery(prom.window)),
        prometheus.queryValue(prom.requestCountQuery ?? requestCountQuery(prom.window))
      ])
      if (isInconclusive(count)) {
        const why = inconclusive(`request count: ${count.why}`)
        return { errorRatePercent: why, p95Seconds: why, requests: 0 }
      }
      const requests = Math.round(count)
      if (requests < settings.minRequests) {
        const why = inconclusive(
          `only ${requests} requests in ${prom.window}, fewer than ${settings.minRequests}`
        )
        return { errorRatePercent: why, p95Seconds: why, requests }
      }
      return { errorRatePercent: rate, p95Seconds: p95, requests }
    }
    const sample = await sampleHttp({
      url: `${config.nginx.url}/`,
      requests: samples,
      budgetMs: 20_000,
      concurrency: 16,
      minCompleted: Math.min(settings.minRequests, samples)
    })
    if (sample.status !== 'ok') {
      const why = inconclusive(sample.why)
      return { errorRatePercent: why, p95Seconds: why, requests: sample.completed + sample.errors }
    }
    const requests = sample.completed + sample.errors
    if (requests < settings.minRequests) {
      const why = inconclusive(`only ${requests} requests, fewer than ${settings.minRequests}`)
      return { errorRatePercent: why, p95Seconds: why, requests }
    }
    return { errorRatePercent: sample.errorRatePercent, p95Seconds: sample.p95Seconds, requests }
  }
  const upRound = async (): Promise<Reading<boolean>> => {
    const res = await probeThroughNginx(config)
    return res.error ? false : res.status < 500
  }

  const sampled = timed(
    `service up, error rate and p95: ${rounds} rounds (${prom ? `Prometheus, ${prom.window}` : `${samples} requests through nginx`}), failure limit ${failureLimit}`,
    async () => {
      const ups: Reading<boolean>[] = []
      const traffic: TrafficRound[] = []
      for (let i = 0; i < rounds; i++) {
        if (i > 0) await sleep(intervalMs)
        const [up, t] = await Promise.all([
          withDeadline(upRound(), 30_000, () => inconclusive('no answer within 30 s')),
          withDeadline(trafficRound(), 30_000, () => {
            const why = inconclusive('no answer within 30 s')
            return { errorRatePercent: why, p95Seconds: why, requests: 0 }
          })
        ])
        ups.push(up)
        traffic.push(t)
      }
      const upVerdict = aggregateSamples(ups, { minSamples: rounds, failureLimit })
      const serviceUp: Reading<boolean> =
        upVerdict.verdict === 'pass'
          ? true
          : upVerdict.verdict === 'fail'
            ? false
            : inconclusive(upVerdict.why)
      const rate = sustained(
        traffic.map(t => t.errorRatePercent),
        v => v > thresholds.errorRatePercent.high,
        failureLimit
      )
      const p95 = sustained(
        traffic.map(t => t.p95Seconds),
        v => v > thresholds.responseTimeSeconds.high,
        failureLimit
      )
      const counted = traffic.filter(t => !isInconclusive(t.errorRatePercent)).map(t => t.requests)
      const requestCount = counted.length ? Math.min(...counted) : 0
      const measured: Measurements = {
        serviceUp,
        errorRatePercent: rate.value,
        p95Seconds: p95.value,
        requestCount,
        latencySampleCount: requestCount
      }
      return {
        measured,
        rounds: traffic.map(
          (t, i) =>
            `${showReading(ups[i])}/${fixed(t.errorRatePercent, 1)}%/${fixed(t.p95Seconds, 3)}s/${t.requests}`
        )
      }
    },
    ({ measured: m, rounds: r }) =>
      `up ${showReading(m.serviceUp)}, error rate ${showReading(m.errorRatePercent)} %, p95 ${showReading(m.p95Seconds)} s; ` +
      `rounds (up/rate/p95/requests): ${r.join(' | ')}`
  )

  const corruption = timed(
    'data corruption marker',
    (): Promise<Reading<boolean>> =>
      Promise.resolve(
        config.corruptionMarker
          ? existsSync(config.corruptionMarker)
          : inconclusive('no corruptionMarker configured')
      ),
    showReading
  )

  const database = timed(
    'database',
    async (): Promise<Reading<boolean> | undefined> =>
      config.database
        ? deadline(
            databasePing(config.database).then(p => !p.ok),
            (): Reading<boolean> => inconclusive(late)
          )
        : undefined,
    v => (v === undefined ? 'not configured' : v === true ? 'FAILING' : isInconclusive(v) ? v.why : 'answers')
  )

  const previousHealthy = timed(
    `previous environment (${previous ?? 'unknown'})`,
    async (): Promise<boolean | undefined> =>
      previous
        ? deadline(
            targetReady(config, previous).then(r => r.ready),
            () => false
          )
        : undefined,
    v => (v === undefined ? 'unknown' : v ? 'ready' : 'not ready')
  )

  // Health checks: the live target's runtime state, the ports users depend on, and (compose) the daemon.
  const liveState = timed(
    `live target state (${active ?? 'none'}, ${config.runtime})`,
    async (): Promise<Reading<boolean> | undefined> =>
      active
        ? deadline(
            targetState(service, active).then(s => s.healthy),
            (): Reading<boolean> => inconclusive(late)
          ).catch((e: unknown) => inconclusive(messageOf(e)))
        : undefined,
    v =>
      v === undefined ? 'nginx points at neither target' : isInconclusive(v) ? v.why : v ? 'healthy' : 'DOWN'
  )
  const ports = timed(
    'ports listening',
    () => Promise.all(knownPorts(config).map(async p => ({ ...p, open: await listening(p.address) }))),
    v => v.map(p => `${p.name} ${p.address} ${p.open ? 'listening' : 'CLOSED'}`).join(', ')
  )
  const daemon = timed(
    'Docker daemon',
    async () =>
      config.runtime === 'compose'
        ? deadline(dockerDaemon(), () => ({ ok: false, detail: late }))
        : undefined,
    v => (v === undefined ? `not used (runtime ${config.runtime})` : v.detail)
  )
  const disk = timed(
    'disk space (backups)',
    () => diskSpace(service).catch((e: unknown) => ({ low: false, detail: `unknown (${messageOf(e)})` })),
    v => v.detail
  )

  const [t, dataCorruption, databaseFailure, prev, live, open, docker, space] = await Promise.all([
    sampled,
    corruption,
    database,
    previousHealthy,
    liveState,
    ports,
    daemon,
    disk
  ])
  const checks: Reading<boolean>[] = [
    ...(live === undefined ? [] : [live]),
    ...open.filter(p => p.name === 'nginx' || p.name === active).map(p => p.open),
    ...(docker ? [docker.ok] : [])
  ]
  const unknown = checks.find(isInconclusive)
  const failedHealthChecks: Reading<number> = unknown ?? checks.filter(c => c === false).length
  const measurements: Measurements = {
    ...t.measured,
    dataCorruption,
    databaseFailure,
    failedHealthChecks,
    previousHealthy: prev
  }
  const assessment = classifySeverity(measurements, thresholds)
  if (space.low) assessment.reasons.push(diskReason(space.detail))
  return { assessment, measurements, probes }
}

/** Disk running short is not a severity of its own (the runbook lists it under Common Issues): a LOW note. */
function diskReason(detail: string): Reason {
  return {
    code: 'disk_low',
    message: `disk space low: ${detail} — a rollback needs room for its safety backup`,
    severity: 'LOW',
    measured: null,
    threshold: null
  }
}
