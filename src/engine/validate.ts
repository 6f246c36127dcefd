import { existsSync } from 'node:fs'
import { runCommand } from '../drivers/exec'
import { databasePing, integrityCheck, tableCounts } from '../drivers/database'
import { field } from '../drivers/http'
import { sampleHttp } from '../drivers/http-sampler'
import { probe } from '../drivers/http'
import { activeColor, answeredBy, probeThroughNginx, type Service } from './service'

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

const pass = (name: string, measured: string, threshold = ''): Check => ({ name, status: 'pass', measured, threshold })
const fail = (name: string, measured: string, threshold = ''): Check => ({ name, status: 'fail', measured, threshold })
const skip = (name: string, why: string): Check => ({ name, status: 'skip', measured: why, threshold: '' })

/**
 * The runbook's validation: quick by default (targets, HTTP API, database, data integrity, error rate and
 * latency); thorough adds the smoke tests. Each check reports pass / fail / skip with its measured value
 * and threshold. Checks run in parallel.
 */
export async function validate(service: Service, options: { thorough: boolean; samples?: number }): Promise<ValidationReport> {
  const { config, runtime } = service
  const th = config.thresholds.validate
  const db = config.database

  const checks = await Promise.all([
    (async (): Promise<Check> => {
      const active = activeColor(service)
      if (!active) return fail('live target running', `nginx points at ${service.nginx.activeUpstream() ?? 'nothing'}`)
      const state = await runtime.state(active)
      return state.running ? pass('live target running', `${active}: ${state.detail}`) : fail('live target running', `${active}: ${state.detail}`)
    })(),
    (async (): Promise<Check> => {
      const res = await probeThroughNginx(config)
      const by = answeredBy(config, res)
      return res.ok
        ? pass(`HTTP ${config.health.path}`, `HTTP ${res.status} from ${by ?? 'unknown'} in ${Math.round(res.latencyMs)} ms`, '2xx')
        : fail(`HTTP ${config.health.path}`, res.error ?? `HTTP ${res.status}`, '2xx')
    })(),
    (async (): Promise<Check> => {
      const res = await probe(config.nginx.url + config.health.statusPath, config.health.timeoutMs)
      const ready = field(res.json, 'overall_ready')
      return ready === true
        ? pass(`HTTP ${config.health.statusPath}`, 'overall_ready: true', 'overall_ready: true')
        : fail(`HTTP ${config.health.statusPath}`, res.error ?? `HTTP ${res.status}, overall_ready: ${JSON.stringify(ready)}`, 'overall_ready: true')
    })(),
    (async (): Promise<Check> => {
      if (!db) return skip('database connection', 'no database configured')
      const ping = await databasePing(db)
      return ping.ok ? pass('database connection', ping.detail) : fail('database connection', ping.detail)
    })(),
    (async (): Promise<Check> => {
      if (!db) return skip('database integrity', 'no database configured')
      const r = await integrityCheck(db).catch((e: unknown) => ({ ok: false, detail: String(e) }))
      return r.ok ? pass('database integrity', r.detail) : fail('database integrity', r.detail)
    })(),
    (async (): Promise<Check> => {
      if (!db || !db.criticalTables.length) return skip('critical data', 'no criticalTables configured')
      const baseline = service.store.list().find(b => b.manifest.rowCounts)?.manifest.rowCounts
      const counts = await tableCounts(db, db.criticalTables).catch(() => undefined)
      if (!counts) return fail('critical data', 'could not count rows')
      const shown = Object.entries(counts).map(([t, n]) => `${t}=${n}`).join(', ')
      const missing = Object.entries(counts).filter(([, n]) => n === 'missing')
      if (missing.length) return fail('critical data', shown, 'every critical table present')
      const lost = baseline
        ? Object.entries(counts).filter(([t, n]) => typeof n === 'number' && baseline[t] !== undefined && n < baseline[t])
        : []
      if (lost.length)
        return fail('critical data', shown, `no fewer rows than the last backup (${lost.map(([t]) => `${t}=${baseline![t]}`).join(', ')})`)
      return pass('critical data', shown, baseline ? 'no fewer rows than the last backup' : 'every critical table present')
    })(),
    Promise.resolve(
      !config.corruptionMarker
        ? skip('no corruption marker', 'no corruptionMarker configured')
        : existsSync(config.corruptionMarker)
          ? fail('no corruption marker', `${config.corruptionMarker} exists`, 'absent')
          : pass('no corruption marker', 'absent', 'absent')
    ),
    (async (): Promise<Check[]> => {
      const sample = await sampleHttp({ url: `${config.nginx.url}/`, requests: options.samples ?? 40, concurrency: 8, budgetMs: 20_000 })
      if (sample.status !== 'ok') {
        const why = `inconclusive: ${sample.why}`
        return [fail('error rate', why, `< ${th.errorRatePercent}%`), fail('p95 latency', why, `< ${th.p95Ms} ms`)]
      }
      const rate = sample.errorRatePercent
      const p95 = Math.round(sample.p95Seconds * 1000)
      const n = `over ${sample.completed + sample.errors} requests`
      return [
        rate < th.errorRatePercent ? pass('error rate', `${rate.toFixed(1)}% ${n}`, `< ${th.errorRatePercent}%`) : fail('error rate', `${rate.toFixed(1)}% ${n}`, `< ${th.errorRatePercent}%`),
        p95 < th.p95Ms ? pass('p95 latency', `${p95} ms`, `< ${th.p95Ms} ms`) : fail('p95 latency', `${p95} ms`, `< ${th.p95Ms} ms`)
      ]
    })(),
    (async (): Promise<Check> => {
      if (!options.thorough) return skip('smoke tests', 'quick validation (use --thorough)')
      if (!config.smokeTest) return skip('smoke tests', 'no smokeTest configured')
      const res = await runCommand(config.smokeTest, { timeoutMs: 300_000 })
      const tail = (res.stderr || res.stdout).trim().split('\n').slice(-1)[0] ?? ''
      return res.code === 0 ? pass('smoke tests', 'exit 0', 'exit 0') : fail('smoke tests', `exit ${res.code}: ${tail}`, 'exit 0')
    })()
  ])
  const flat = checks.flat()
  return { passed: flat.every(c => c.status !== 'fail'), checks: flat }
}

export function checksMarkdown(report: ValidationReport): string {
  const icon = { pass: '✅', fail: '❌', skip: '⏭️' }
  return [
    `## ${report.passed ? '✅' : '❌'} backout validate: ${report.passed ? 'passed' : 'failed'}`,
    '',
    '| Check | Result | Measured | Threshold |',
    '|---|---|---|---|',
    ...report.checks.map(c => `| ${c.name} | ${icon[c.status]} ${c.status} | ${c.measured.replace(/\|/g, '\\|')} | ${c.threshold} |`)
  ].join('\n')
}

export function checksText(report: ValidationReport): string {
  const mark = { pass: '✓', fail: '✗', skip: '·' }
  const width = Math.max(...report.checks.map(c => c.name.length))
  return [
    `validate: ${report.passed ? 'passed' : 'FAILED'}`,
    ...report.checks.map(c => `${mark[c.status]} ${c.name.padEnd(width)}  ${c.measured}${c.threshold ? `  (${c.threshold})` : ''}`)
  ].join('\n')
}
