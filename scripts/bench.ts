// npm run bench: measures what decides how long users are down, on loopback only, bounded in time, and
// writes BENCHMARKS.md. Not part of the tests. Sections: --only load,rto,coldstart (default: all).
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readdirSync, rmSync, writeFileSync, chmodSync } from 'node:fs'
import { cpus, totalmem, tmpdir } from 'node:os'
import path from 'node:path'
import { MemoryLogger } from '../src/core/logger'
import type { RunRecord } from '../src/core/run-record'
import { loadConfig } from '../src/drivers/config-file'
import { runCommand } from '../src/drivers/exec'
import { rollback } from '../src/engine/rollback'
import { createService } from '../src/engine/service'
import { sandboxDown, sandboxUp } from '../src/sandbox/sandbox'

const root = path.resolve(__dirname, '..')
const cli = path.join(root, 'dist/cli/index.js')
const only = (process.argv.find(a => a.startsWith('--only='))?.slice(7) ?? 'load,rto,coldstart').split(',')
const sections: string[] = []
const log = new MemoryLogger()

async function withSandbox<T>(work: (config: string, nginxUrl: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(path.join(tmpdir(), 'backout-bench-'))
  chmodSync(dir, 0o755)
  const state = await sandboxUp({ dir, appCommand: [process.execPath, cli, 'sandbox'], log })
  try {
    return await work(state.config, `http://127.0.0.1:${state.nginxPort}`)
  } finally {
    await sandboxDown(dir, log)
    rmSync(dir, { recursive: true, force: true })
  }
}

function parseWrk(out: string): { requests: number; rps: number; non2xx: number; socketErrors: number; p99: string } {
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0)
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0)
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0)
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out)
  const socketErrors = sock ? sock.slice(1).reduce((s, n) => s + Number(n), 0) : 0
  const p99 = /99%\s+(\S+)/.exec(out)?.[1] ?? '?'
  return { requests, rps, non2xx, socketErrors, p99 }
}

const stepMs = (record: RunRecord, name: string): number => record.steps.find(s => s.name === name)?.durationMs ?? NaN

/** 1. Level 1 under load: wrk through nginx while the switch happens. */
async function benchLoad(): Promise<void> {
  const runs: string[] = []
  for (let i = 0; i < 3; i++) {
    await withSandbox(async (config, url) => {
      const service = createService(loadConfig(config), log)
      const wrk = runCommand(['wrk', '-t2', '-c32', '-d6s', '--latency', `${url}/health`])
      await new Promise(r => setTimeout(r, 2000))
      const { record, error } = await rollback(service, { level: 1, reason: 'bench', dryRun: false, confirm: () => Promise.resolve(true) })
      if (error) throw error instanceof Error ? error : new Error('rollback failed')
      const w = parseWrk((await wrk).stdout)
      const switchDetail = record.steps.find(s => s.name === 'Switch traffic')?.detail ?? ''
      const switchMs = /responses from blue (\d+) ms after the decision/.exec(switchDetail)?.[1] ?? '?'
      runs.push(
        `| ${i + 1} | ${w.requests} | ${w.rps.toFixed(0)} | ${w.non2xx} | ${w.socketErrors} | ${w.non2xx + w.socketErrors} | ${switchMs} ms | ${w.p99} |`
      )
    })
  }
  sections.push(
    [
      '## 1. Level 1 under load',
      '',
      'wrk (2 threads, 32 keep-alive connections, 6 s) against `/health` through nginx; Level 1 starts 2 s in.',
      'Failed = non-2xx + socket errors during the whole run. Switch latency = from the decision (before the',
      'upstream file is written) to the moment 20 consecutive responses through nginx come from blue.',
      'Goal: 0 failed, ≤ 1 s.',
      '',
      '| Run | Requests | Req/s | Non-2xx | Socket errors | Failed | Switch latency | p99 |',
      '|---|---|---|---|---|---|---|---|',
      ...runs,
      '',
      'Reproduce: `npm run bench -- --only=load`'
    ].join('\n')
  )
}

/** 2. RTO per level on the sandbox, step by step from the run record. */
async function benchRto(): Promise<void> {
  const rows: string[] = []
  await withSandbox(async config => {
    const service = createService(loadConfig(config), log)
    const { record } = await rollback(service, { level: 1, reason: 'bench', dryRun: false, confirm: () => Promise.resolve(true) })
    for (const s of record.steps) rows.push(`| 1 | ${s.name} | ${((s.durationMs ?? 0) / 1000).toFixed(3)} s | ${s.deadlineSeconds} s |`)
    rows.push(`| 1 | **total** | **${((record.durationMs ?? 0) / 1000).toFixed(3)} s** | RTO 300 s |`)
    void stepMs
  })
  sections.push(
    [
      '## 2. RTO per level (sandbox)',
      '',
      'Each step as the run record measured it, against its deadline (its share of the RTO).',
      '',
      '| Level | Step | Took | Deadline |',
      '|---|---|---|---|',
      ...rows,
      '',
      'Reproduce: `npm run bench -- --only=rto`'
    ].join('\n')
  )
}

/** 5. Cold start of each bundle: node dist/<name>/index.js with nothing to do (no config: it refuses). */
async function benchColdStart(): Promise<void> {
  const rows: string[] = []
  for (const name of readdirSync(path.join(root, 'dist')).sort()) {
    const times: number[] = []
    for (let i = 0; i < 11; i++) {
      const started = performance.now()
      await runCommand([process.execPath, path.join(root, 'dist', name, 'index.js'), ...(name === 'cli' ? ['--help'] : [])], {
        env: { PATH: process.env.PATH, INPUT_CONFIG: '/nonexistent/backout.yml', GITHUB_OUTPUT: '/dev/null' }
      })
      times.push(performance.now() - started)
    }
    times.sort((a, b) => a - b)
    const median = times[5]!
    rows.push(`| ${name} | ${median.toFixed(0)} ms | ${times[0]!.toFixed(0)} ms | ${median <= 150 ? 'met' : 'missed'} |`)
  }
  sections.push(
    [
      '## 5. Cold start of each bundle',
      '',
      '`node dist/<name>/index.js` with a config that does not exist (it loads, validates and refuses), 11 runs.',
      'Goal: ≤ 150 ms.',
      '',
      '| Bundle | Median | Best | Goal |',
      '|---|---|---|---|',
      ...rows,
      '',
      'Reproduce: `npm run bench -- --only=coldstart`'
    ].join('\n')
  )
}

async function main(): Promise<void> {
  const started = new Date()
  if (only.includes('load')) await benchLoad()
  if (only.includes('rto')) await benchRto()
  if (only.includes('coldstart')) await benchColdStart()
  const node = process.version
  const nginx = execFileSync('nginx', ['-v'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }) || 'nginx'
  const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${node}${nginx ? '' : ''}`
  const text = [
    '# backout benchmarks',
    '',
    `Measured ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC on ${machine}, loopback only.`,
    'Every figure comes from `npm run bench` (scripts/bench.ts); each section names the command that reproduces it.',
    '',
    ...sections.flatMap(s => [s, ''])
  ].join('\n')
  writeFileSync(path.join(root, 'BENCHMARKS.md'), text)
  process.stdout.write(text)
}

void main().catch((e: unknown) => {
  console.error(e)
  process.exitCode = 1
})
