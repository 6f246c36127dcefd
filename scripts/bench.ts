// npm run bench: measures what decides how long users are down, on loopback only, bounded in time, and
// writes BENCHMARKS.md. Not part of the tests.
// Sections: --only=load,rto,snapshot,restore,coldstart (default: all). `restore` restores what `snapshot` took,
// so it runs the snapshot section too. Every child process is spawned from an argument array (no shell); pipelines
// are stream.pipeline between child processes. All temp data lives in one sandbox directory per run, removed in
// a finally block, on SIGINT/SIGTERM, and by a watchdog that ends a run that overstays BENCH_TIMEOUT_MIN (25).
import { execFileSync, spawn } from 'node:child_process'
import { randomBytes, randomInt } from 'node:crypto'
import {
  chmodSync,
  closeSync,
  createWriteStream,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  existsSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
  fsyncSync
} from 'node:fs'
import { open } from 'node:fs/promises'
import { cpus, totalmem, tmpdir } from 'node:os'
import path from 'node:path'
import { Transform, type TransformCallback } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { MemoryLogger } from '../src/core/logger'
import type { RunRecord } from '../src/core/run-record'
import { sha256File } from '../src/drivers/archive'
import type { BackupInfo } from '../src/drivers/backup-store'
import { loadConfig } from '../src/drivers/config-file'
import { pgQuery } from '../src/drivers/database'
import { runChecked, runCommand } from '../src/drivers/exec'
import { logicalRestore } from '../src/drivers/postgres-backup'
import { freePort } from '../src/drivers/net'
import {
  asPostgresUser,
  describeCluster,
  mkdirForPostgres,
  startCluster,
  stopCluster
} from '../src/drivers/postgres-cluster'
import { rollback } from '../src/engine/rollback'
import { createService, type Service } from '../src/engine/service'
import { takeSnapshot } from '../src/engine/snapshot'
import { sandboxDown, sandboxUp, type SandboxOptions, type SandboxState } from '../src/sandbox/sandbox'

const root = path.resolve(__dirname, '..')
const cli = path.join(root, 'dist/cli/index.js')
const only = (
  process.argv.find(a => a.startsWith('--only='))?.slice(7) ?? 'load,rto,snapshot,restore,coldstart'
).split(',')
const sections: string[] = []
const log = new MemoryLogger()

/** What must be undone if the run is cut short: each entry stops what it started and removes its directory. */
const cleanups = new Set<() => Promise<void>>()

async function cleanupAll(): Promise<void> {
  for (const c of [...cleanups].reverse()) await c().catch((e: unknown) => console.error(e))
}

for (const sig of ['SIGINT', 'SIGTERM'] as const)
  process.once(sig, () => {
    console.error(`bench: ${sig}: cleaning up`)
    void cleanupAll().finally(() => process.exit(130))
  })

const watchdog = setTimeout(
  () => {
    console.error('bench: over its time limit: cleaning up and giving up')
    void cleanupAll().finally(() => process.exit(124))
  },
  Number(process.env.BENCH_TIMEOUT_MIN ?? 25) * 60_000
)
watchdog.unref()

async function withSandbox<T>(
  work: (config: string, nginxUrl: string, state: SandboxState) => Promise<T>,
  options: Partial<Pick<SandboxOptions, 'live' | 'walArchive'>> = {}
): Promise<T> {
  const dir = mkdtempSync(path.join(tmpdir(), 'backout-bench-'))
  chmodSync(dir, 0o755)
  const extra: (() => Promise<void>)[] = []
  const cleanup = async (): Promise<void> => {
    for (const e of extra.reverse()) await e().catch(() => undefined)
    await sandboxDown(dir, log).catch(() => undefined)
    rmSync(dir, { recursive: true, force: true })
  }
  cleanups.add(cleanup)
  try {
    const state = await sandboxUp({ dir, appCommand: [process.execPath, cli, 'sandbox'], log, ...options })
    sandboxExtras = extra
    return await work(state.config, `http://127.0.0.1:${state.nginxPort}`, state)
  } finally {
    sandboxExtras = []
    cleanups.delete(cleanup)
    await cleanup()
  }
}

/** Things started inside the current sandbox besides the sandbox itself (stopped before it goes down). */
let sandboxExtras: (() => Promise<void>)[] = []

function parseWrk(out: string): {
  requests: number
  rps: number
  non2xx: number
  socketErrors: number
  p99: string
} {
  const requests = Number(/(\d+) requests in/.exec(out)?.[1] ?? 0)
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0)
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0)
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out)
  const socketErrors = sock ? sock.slice(1).reduce((s, n) => s + Number(n), 0) : 0
  const p99 = /99%\s+(\S+)/.exec(out)?.[1] ?? '?'
  return { requests, rps, non2xx, socketErrors, p99 }
}

const stepMs = (record: RunRecord, name: string): number =>
  record.steps.find(s => s.name === name)?.durationMs ?? NaN

/** 1. Level 1 under load: wrk through nginx while the switch happens. */
async function benchLoad(): Promise<void> {
  const runs: string[] = []
  for (let i = 0; i < 3; i++) {
    await withSandbox(async (config, url) => {
      const service = createService(loadConfig(config), log)
      const wrk = runCommand(['wrk', '-t2', '-c32', '-d6s', '--latency', `${url}/health`])
      await new Promise(r => setTimeout(r, 2000))
      const { record, error } = await rollback(service, {
        level: 1,
        reason: 'bench',
        dryRun: false,
        confirm: () => Promise.resolve(true)
      })
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

/** The release snapshot: the oldest non-safety backup (sandboxUp takes it before deploying green). */
function releaseSnapshot(service: Service): BackupInfo {
  const b = service.store
    .list()
    .filter(x => x.manifest.kind !== 'safety')
    .at(-1)
  if (!b) throw new Error('the sandbox holds no release snapshot')
  return b
}

const secs = (ms: number | undefined): string => `${((ms ?? 0) / 1000).toFixed(3)} s`

/** 2. RTO per level on the sandbox, step by step from the run record: each level on a fresh sandbox. */
async function benchRto(): Promise<void> {
  const rows: string[] = []
  const totals: string[] = []
  for (const level of [1, 2, 3] as const) {
    await withSandbox(async config => {
      const service = createService(loadConfig(config), log)
      const target = level === 1 ? undefined : releaseSnapshot(service).id
      const { record, error } = await rollback(service, {
        level,
        target,
        reason: 'bench',
        dryRun: false,
        confirm: () => Promise.resolve(true)
      })
      if (error || record.status !== 'success')
        throw new Error(`Level ${level} ${record.status}: ${record.error ?? String(error)}`)
      for (const s of record.steps)
        rows.push(`| ${level} | ${s.name} | ${secs(s.durationMs)} | ${s.deadlineSeconds ?? '?'} s |`)
      const rto = record.rtoSeconds ?? 0
      const took = (record.durationMs ?? 0) / 1000
      rows.push(`| ${level} | **total** | **${secs(record.durationMs)}** | RTO ${rto} s |`)
      totals.push(
        `| ${level} | ${took.toFixed(1)} s | ${rto / 60} min | ${((took / rto) * 100).toFixed(1)} % | ${took <= rto ? 'met' : 'missed'} |`
      )
    })
  }
  sections.push(
    [
      '## 2. RTO per level (sandbox)',
      '',
      'Each level on a fresh sandbox (real nginx, PostgreSQL 15, blue/green app; green v2.5.0 live and failing).',
      'Levels 2 and 3 target the release snapshot (the oldest non-safety backup: blue v2.4.9 before the deployment).',
      'Each step as the run record measured it, against its deadline (its share of the RTO). The sandbox database',
      'is small here; section 4 runs Level 3 on ~1 GB + ~1 GB.',
      '',
      '| Level | Took | Runbook target | Share of target | Goal |',
      '|---|---|---|---|---|',
      ...totals,
      '',
      '| Level | Step | Took | Deadline |',
      '|---|---|---|---|',
      ...rows,
      '',
      'Reproduce: `npm run bench -- --only=rto`'
    ].join('\n')
  )
}

// ---------------------------------------------------------------------------------------------------------------
// 3 and 4: snapshot and restore of ~1 GB of PostgreSQL plus a ~1 GB data volume

const MB = 1e6
const rate = (bytes: number, ms: number): string => `${(bytes / MB / (ms / 1000)).toFixed(0)} MB/s`
const sizeMB = (bytes: number): string => `${(bytes / MB).toFixed(0)} MB`
const s1 = (ms: number): string => `${(ms / 1000).toFixed(1)} s`

class Counter extends Transform {
  bytes = 0
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.bytes += chunk.length
    done(null, chunk)
  }
}

/**
 * Runs argument arrays piped into each other (stream.pipeline between the child processes, no shell). The last
 * one's output goes to outFile, fsynced like backout's own outputs, or is counted and dropped. Rejects, with the
 * failing command's stderr, when any exits non-zero or timeoutMs passes (every child is then killed).
 */
async function pipe(
  cmds: string[][],
  outFile?: string,
  timeoutMs = 300_000
): Promise<{ ms: number; bytes: number }> {
  const started = performance.now()
  const signal = AbortSignal.timeout(timeoutMs)
  const procs = cmds.map(argv => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], signal })
    const err: Buffer[] = []
    child.stderr.on('data', (b: Buffer) => {
      if (err.length < 256) err.push(b)
    })
    child.stdin.on('error', () => undefined)
    const exited = new Promise<void>((resolve, reject) => {
      child.on('error', reject)
      child.on('close', (code, sig) =>
        code === 0
          ? resolve()
          : reject(
              new Error(
                `${argv.join(' ')} exited ${code ?? sig}: ${Buffer.concat(err).toString().trim().slice(-600)}`
              )
            )
      )
    })
    return { child, exited }
  })
  procs[0]!.child.stdin.end()
  const counter = new Counter()
  const links: Promise<unknown>[] = []
  for (let i = 0; i + 1 < procs.length; i++)
    links.push(pipeline(procs[i]!.child.stdout, procs[i + 1]!.child.stdin))
  const tail = procs[procs.length - 1]!.child.stdout
  if (outFile) links.push(pipeline(tail, counter, createWriteStream(outFile, { flags: 'wx' })))
  else {
    counter.resume()
    links.push(pipeline(tail, counter))
  }
  const results = await Promise.allSettled([...procs.map(p => p.exited), ...links])
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
  if (failed) {
    for (const p of procs) if (p.child.exitCode === null) p.child.kill('SIGKILL')
    throw failed.reason instanceof Error ? failed.reason : new Error(String(failed.reason))
  }
  if (outFile) {
    const fh = await open(outFile, 'r+')
    await fh.sync()
    await fh.close()
  }
  return { ms: performance.now() - started, bytes: counter.bytes }
}

/** One command (argument array), timed; throws with its stderr when it fails. */
async function timed(argv: string[], timeoutMs = 300_000): Promise<number> {
  const started = performance.now()
  await runChecked(argv, { timeoutMs })
  return performance.now() - started
}

async function duBytes(p: string): Promise<number> {
  const res = await runChecked(['du', '-sb', p])
  return Number(res.stdout.split('\t')[0])
}

/** Sequential rate of the disk the sandbox is on: 1 GiB written with dd conv=fsync, read back with O_DIRECT. */
async function diskRate(dir: string): Promise<{ writeMBs: number; readMBs: number }> {
  const file = path.join(dir, 'dd-test')
  const bytes = 256 * 4 * 2 ** 20
  try {
    const w = await timed([
      'dd',
      'if=/dev/zero',
      `of=${file}`,
      'bs=4M',
      'count=256',
      'conv=fsync',
      'status=none'
    ])
    const r = await timed(['dd', `if=${file}`, 'of=/dev/null', 'bs=4M', 'iflag=direct', 'status=none'])
    return { writeMBs: bytes / MB / (w / 1000), readMBs: bytes / MB / (r / 1000) }
  } finally {
    rmSync(file, { force: true })
  }
}

/**
 * A data volume of `total` bytes in 64 MiB files: log-like text lines (a deterministic 8 MiB template, each block
 * rotated at random) with 32 random hex characters in every 128 bytes — random-ish, compressible ~5–8×.
 */
function fillVolume(dir: string, total: number): void {
  const block = 8 * 2 ** 20
  const fileSize = 64 * 2 ** 20
  const actions = ['move', 'trade', 'chat', 'craft', 'login', 'logout', 'attack', 'heal']
  let seed = 42
  const next = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31
    return seed % n
  }
  const lines: string[] = []
  let len = 0
  for (let i = 0; len < block; i++) {
    const line =
      `2026-11-23T12:${String(next(60)).padStart(2, '0')}:${String(next(60)).padStart(2, '0')}.${String(next(1000)).padStart(3, '0')}Z ` +
      `INFO region=${next(12)} player=${String(next(200000)).padStart(6, '0')} action=${actions[next(actions.length)]} ` +
      `x=${next(4096)} y=${next(4096)} hp=${next(100)}\n`
    lines.push(line)
    len += line.length
  }
  const template = Buffer.from(lines.join('')).subarray(0, block)
  const buf = Buffer.allocUnsafe(block)
  for (let f = 0; f * fileSize < total; f++) {
    const fd = openSync(path.join(dir, `events-${String(f).padStart(3, '0')}.log`), 'w')
    try {
      for (let off = 0; off < fileSize; off += block) {
        const rot = randomInt(block)
        template.copy(buf, 0, rot)
        template.copy(buf, block - rot, 0, rot)
        const rnd = randomBytes((block / 128) * 16)
        for (let i = 0; i < block / 128; i++)
          buf.write(rnd.toString('hex', i * 16, i * 16 + 16), i * 128 + 48, 'latin1')
        writeSync(fd, buf)
      }
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
  }
}

const ROWS = Number(process.env.BENCH_ROWS ?? 4_200_000)
const VOLUME_BYTES = Number(process.env.BENCH_VOLUME_BYTES ?? 2 ** 30)

const FILL_SQL = [
  `CREATE TABLE bench_events (id bigint NOT NULL, user_id int NOT NULL, kind text NOT NULL, payload text NOT NULL,
     created_at timestamptz NOT NULL)`,
  `INSERT INTO bench_events
     SELECT g, g % 50000, (ARRAY['login','logout','move','trade','chat','craft'])[1 + g % 6],
            repeat(md5(g::text), 3) || md5(random()::text), timestamptz '2026-01-01' + g * interval '1 second'
       FROM generate_series(1, ${ROWS}) g`,
  'ALTER TABLE bench_events ADD PRIMARY KEY (id)',
  'CREATE INDEX bench_events_user ON bench_events (user_id, created_at)',
  'VACUUM ANALYZE bench_events',
  'CHECKPOINT'
]

interface Big {
  dir: string
  out: string
  service: Service
  bin: (name: string) => string
  url: (db?: string) => string
  state: SandboxState
  vol: string
  dbBytes: number
  volBytes: number
  disk: { writeMBs: number; readMBs: number }
  fillDbMs: number
  fillVolMs: number
}

interface SnapshotFigures {
  backup: BackupInfo
}

/** 3. Snapshot: backout's takeSnapshot vs the runbook's recipe vs the raw tools, side by side. */
async function benchSnapshot(b: Big): Promise<SnapshotFigures> {
  const { out, bin, url, vol } = b
  const fileSize = (backup: BackupInfo, p: string): number =>
    backup.manifest.files.find(f => f.path === p)?.size ?? 0

  // backout
  let started = performance.now()
  const wallStart = Date.now()
  const backup = await takeSnapshot(b.service, { safety: false })
  const backoutMs = performance.now() - started
  // Its phases, from when each output was last written: data volume, then logical dump, then base backup, then
  // the manifest (every file hashed again). Each phase includes the fsync and bookkeeping after the previous file.
  const mt = (rel: string): number => statSync(path.join(backup.dir, rel)).mtimeMs
  const tData = mt('data/godot-data.tar.zst')
  const tDump = mt('database/dump.tar.zst')
  const tBase = mt('database/base.tar.zst')
  const tManifest = mt('manifest.json')
  const phase = {
    data: tData - wallStart,
    dump: tDump - tData,
    base: tBase - tDump,
    manifest: tManifest - tBase
  }
  const dumpSize = fileSize(backup, 'database/dump.tar.zst')
  const baseSize = fileSize(backup, 'database/base.tar.zst')
  const dataSize = fileSize(backup, 'data/godot-data.tar.zst')
  // What the manifest's second read costs: every file hashed again after it was written (and hashed) once.
  started = performance.now()
  for (const f of backup.manifest.files) await sha256File(path.join(backup.dir, f.path))
  const rehashMs = performance.now() - started

  // the runbook's recipe
  mkdirSync(path.join(out, 'recipe'))
  const recipeDb = await pipe(
    [
      [bin('pg_dump'), '-d', url()],
      ['gzip', '-c']
    ],
    path.join(out, 'recipe/db.sql.gz')
  )
  const recipeVol = await pipe([['tar', '-C', vol, '-czf', '-', '.']], path.join(out, 'recipe/volume.tar.gz'))

  // the raw tools
  mkdirSync(path.join(out, 'raw'))
  const rawDumpMs = await timed([
    bin('pg_dump'),
    '-Fd',
    '-j2',
    '-Z0',
    '-f',
    path.join(out, 'raw/dump'),
    '-d',
    url()
  ])
  const rawDumpZ = await pipe(
    [
      ['tar', '-C', path.join(out, 'raw/dump'), '-cf', '-', '.'],
      ['zstd', '-q', '-3', '-T2', '-c']
    ],
    path.join(out, 'raw/dump.tar.zst')
  )
  mkdirForPostgres(path.join(out, 'raw/base'))
  const rawBaseMs = await timed(
    asPostgresUser([
      bin('pg_basebackup'),
      '-h',
      '127.0.0.1',
      '-p',
      String(b.state.ports.postgres),
      '-U',
      'postgres',
      '-w',
      '-D',
      path.join(out, 'raw/base'),
      '-Fp',
      '-X',
      'stream',
      '-c',
      'fast'
    ])
  )
  const rawBaseBytes = await duBytes(path.join(out, 'raw/base'))
  const rawVol = await pipe(
    [
      ['tar', '-C', vol, '--numeric-owner', '-cf', '-', '.'],
      ['zstd', '-q', '-1', '-T2', '-c']
    ],
    path.join(out, 'raw/volume.tar.zst')
  )
  rmSync(path.join(out, 'raw/dump.tar.zst'), { force: true }) // the restore uses the directory itself

  const recipeMs = recipeDb.ms + recipeVol.ms
  const recipeBytes = recipeDb.bytes + recipeVol.bytes
  const rawMs = rawDumpMs + rawDumpZ.ms + rawBaseMs + rawVol.ms
  const portable = dumpSize + dataSize
  const speed = recipeMs / backoutMs
  const met = speed >= 3 && portable <= recipeBytes
  const withoutBase = backoutMs - phase.base
  const snapshotNote = met
    ? 'Goal met.'
    : [
        `**Why the goal is missed.** backout takes three captures where the recipe takes two: the physical base backup`,
        `(${s1(phase.base)} here) is what makes section 4's fast physical restore possible; without it the snapshot would take`,
        `about ${s1(withoutBase)} (${(recipeMs / withoutBase).toFixed(2)}× the recipe). The rest is where the time goes beyond the raw`,
        `tools: the phases run one after the other on ${cpus().length} vCPUs; the logical dump and the base backup are both staged`,
        `uncompressed on disk first (pg_dump's directory, pg_basebackup's ${sizeMB(rawBaseBytes)}, which pg_basebackup also fsyncs)`,
        `and then read again by tar; and the manifest reads every file once more to hash it (${s1(rehashMs)}) although`,
        `tarZstd already hashed each output while writing it. The recipe here is slower than the issue's 27 s + 27 s mostly`,
        `because gzip -6 meets 25 % random hex in the volume (tar czf ${s1(recipeVol.ms)}). Changes in backout's code that would`,
        `help, not made here (the owner decides): let BackupWriter record the size and sha256 that tarZstd returns instead of`,
        `re-reading in commit() (−${s1(rehashMs)}); compress the base backup while it streams (pg_basebackup -Ft -X stream`,
        `--compress=client-zstd, PostgreSQL 15) instead of a plain staging copy plus tar (saves writing, fsyncing and`,
        `re-reading ~1 GB, but the restore must then unpack two archives); zstd -1 instead of -3 for data volumes.`,
        `On this 2-vCPU machine even the raw tools take ${s1(rawMs)} without compressing the base backup, i.e. ${(recipeMs / rawMs).toFixed(2)}×`,
        `the recipe: 3× with a compressed base backup on top is at the edge of what two cores allow.`
      ].join('\n')
  sections.push(
    [
      '## 3. Snapshot: ~1 GB PostgreSQL + ~1 GB volume',
      '',
      `The sandbox database grown to ${sizeMB(b.dbBytes)} (pg_database_size: table \`bench_events\`, ${ROWS.toLocaleString('en')} rows of`,
      `generate_series with a md5 payload, primary key and one more index; filled, indexed and VACUUM ANALYZEd in ${s1(b.fillDbMs)})`,
      `and the data volume \`data/godot\` to ${sizeMB(b.volBytes)} (16 × 64 MiB log-like text with 25 % random hex; written in ${s1(b.fillVolMs)}).`,
      'Everything runs one after the other in the same run, on the same data; every output file is fsynced.',
      `Disk: ${b.disk.writeMBs.toFixed(0)} MB/s sequential write (dd, 1 GiB, conv=fsync), ${b.disk.readMBs.toFixed(0)} MB/s read (O_DIRECT).`,
      `With ${(totalmem() / 2 ** 30).toFixed(0)} GiB of RAM the ~2 GB being read stays in the page cache, so reads are not disk-bound.`,
      '',
      '| Method | What | Time | Size |',
      '|---|---|---|---|',
      `| **backout** takeSnapshot | disk estimate (du, pg_database_size) + data volume (tar \\| zstd -3 -T2) | ${s1(phase.data)} | ${sizeMB(dataSize)} |`,
      `| | logical dump (row counts, pg_dump -Fd -j2 -Z0 to a staging dir, then tar \\| zstd -3 -T2) | ${s1(phase.dump)} | ${sizeMB(dumpSize)} |`,
      `| | base backup (pg_basebackup -Fp -X stream to a staging dir, then tar \\| zstd -3 -T2) | ${s1(phase.base)} | ${sizeMB(baseSize)} |`,
      `| | manifest: sha256 of every file, read again (${s1(rehashMs)} when measured apart) | ${s1(phase.manifest)} | |`,
      `| | **whole snapshot** | **${s1(backoutMs)}** | **${sizeMB(backup.sizeBytes)}** (${sizeMB(portable)} without the base backup) |`,
      `| runbook recipe | pg_dump (plain) \\| gzip | ${s1(recipeDb.ms)} | ${sizeMB(recipeDb.bytes)} |`,
      `| | tar czf of the volume | ${s1(recipeVol.ms)} | ${sizeMB(recipeVol.bytes)} |`,
      `| | **total** | **${s1(recipeMs)}** | **${sizeMB(recipeBytes)}** |`,
      `| raw tools | pg_dump -Fd -j2 -Z0 | ${s1(rawDumpMs)} | ${sizeMB(await duBytes(path.join(out, 'raw/dump')))} (directory) |`,
      `| | then tar \\| zstd -3 -T2 | ${s1(rawDumpZ.ms)} | ${sizeMB(rawDumpZ.bytes)} |`,
      `| | pg_basebackup -Fp -X stream -c fast | ${s1(rawBaseMs)} | ${sizeMB(rawBaseBytes)} (uncompressed) |`,
      `| | tar \\| zstd -1 -T2 of the volume | ${s1(rawVol.ms)} | ${sizeMB(rawVol.bytes)} |`,
      `| | **total** | **${s1(rawMs)}** | |`,
      '',
      `**backout vs the recipe: ${speed.toFixed(2)}× the speed** (recipe ${s1(recipeMs)} / backout ${s1(backoutMs)}), ` +
        `and ${sizeMB(portable)} vs ${sizeMB(recipeBytes)} for the same content (backout's logical dump + volume; ` +
        `${(recipeBytes / portable).toFixed(2)}× smaller), while backout also takes a physical base backup the recipe does not. ` +
        `Goal ≥ 3× at no larger size: **${met ? 'met' : 'missed'}**.`,
      `backout vs the raw tools (which also take a base backup, but leave it uncompressed): ${(rawMs / backoutMs).toFixed(2)}×.`,
      '',
      snapshotNote,
      '',
      'Reproduce: `npm run bench -- --only=snapshot`'
    ].join('\n')
  )
  return { backup }
}

/** 4. Level 3 restore of the same: backout (rollback level 3; logicalRestore) vs the recipe vs the raw tools. */
async function benchRestore(b: Big, snap: SnapshotFigures): Promise<void> {
  const { out, bin, url, service } = b
  const total = b.dbBytes + b.volBytes
  const dropDb = (name: string): Promise<unknown> =>
    pgQuery(url('postgres'), `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`, 120_000)

  // backout: Level 3 to the snapshot just taken (physical: it holds a base backup and the cluster is local)
  const { record, error } = await rollback(service, {
    level: 3,
    target: snap.backup.id,
    reason: 'bench',
    dryRun: false,
    confirm: () => Promise.resolve(true)
  })
  if (error || record.status !== 'success')
    throw new Error(`Level 3 ${record.status}: ${record.error ?? String(error)}`)
  const step = (name: string): number => stepMs(record, name)
  const dbStep = record.steps.find(s => s.name === 'Database restoration')
  const physical = /physical restore/.test(dbStep?.detail ?? '')
  const restoreMs = step('Data volume restoration') + step('Database restoration')
  const withPreflight = restoreMs + step('Pre-flight checks')

  // the recipe: gunzip | psql into a fresh database; tar xzf
  await runChecked([
    bin('createdb'),
    '-h',
    '127.0.0.1',
    '-p',
    String(b.state.ports.postgres),
    '-U',
    'postgres',
    'recipe_restore'
  ])
  const recipeDb = await pipe(
    [
      ['gzip', '-dc', path.join(out, 'recipe/db.sql.gz')],
      [bin('psql'), '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', url('recipe_restore')]
    ],
    undefined,
    400_000
  )
  await dropDb('recipe_restore')
  mkdirSync(path.join(out, 'recipe-volume'))
  const recipeVolMs = await timed([
    'tar',
    '-C',
    path.join(out, 'recipe-volume'),
    '-xzf',
    path.join(out, 'recipe/volume.tar.gz')
  ])
  rmSync(path.join(out, 'recipe-volume'), { recursive: true, force: true })
  const recipeMs = recipeDb.ms + recipeVolMs

  // the raw tools: pg_restore -j2 from the directory dump; the base backup copied and started; zstd -d | tar x
  let started = performance.now()
  await runChecked([
    bin('createdb'),
    '-h',
    '127.0.0.1',
    '-p',
    String(b.state.ports.postgres),
    '-U',
    'postgres',
    'raw_restore'
  ])
  await runChecked(
    [bin('pg_restore'), '-j2', '--exit-on-error', '-d', url('raw_restore'), path.join(out, 'raw/dump')],
    {
      timeoutMs: 400_000
    }
  )
  const rawRestoreMs = performance.now() - started
  await dropDb('raw_restore')

  // backout's logical path, measured directly: logicalRestore of the snapshot's dump.tar.zst into a new database
  const logical = await logicalRestore({
    url: url('postgres'),
    database: 'bench_logical',
    file: path.join(snap.backup.dir, 'database/dump.tar.zst'),
    binDir: b.state.pgBinDir,
    workDir: out
  })
  await dropDb('bench_logical')

  const copy = path.join(b.dir, 'pg', 'raw-base-copy')
  const port = await freePort()
  const cluster = describeCluster(
    { dataDir: copy, port, socketDir: path.join(b.dir, 'pg', 'run') },
    b.state.pgBinDir
  )
  const stopCopy = (): Promise<void> => stopCluster(cluster, 'immediate').catch(() => undefined)
  sandboxExtras.push(stopCopy)
  started = performance.now()
  await runChecked(['cp', '-a', path.join(out, 'raw/base'), copy])
  await startCluster(cluster, path.join(b.dir, 'pg', 'raw-base-copy.log'))
  const rawPhysMs = performance.now() - started
  await stopCopy()
  rmSync(copy, { recursive: true, force: true })

  mkdirSync(path.join(out, 'raw-volume'))
  const rawVol = await pipe([
    ['zstd', '-q', '-d', '-c', path.join(out, 'raw/volume.tar.zst')],
    ['tar', '-C', path.join(out, 'raw-volume'), '-xf', '-']
  ])
  rmSync(path.join(out, 'raw-volume'), { recursive: true, force: true })

  // The pre-flight extracts and verifies the volume and base backup that the restore steps then rename into
  // place, so the fair figure counts it: restore steps alone would flatter backout.
  const physSpeed = recipeMs / withPreflight
  const logicalRatio = rawRestoreMs / logical.durationMs
  const volStep = step('Data volume restoration')
  const dbStepMs = step('Database restoration')
  const physMet = physical && physSpeed >= 3
  const notes: string[] = []
  if (!physMet)
    notes.push(
      [
        `**Why the physical goal is missed.** ${physical ? '' : 'Level 3 took the logical path here (no usable base backup), so there was no physical path to measure. '}` +
          `Counted fairly (pre-flight included: it extracts and verifies the volume and the base backup, which the restore`,
        `steps then rename into place instead of copying — ${s1(volStep)} + ${s1(dbStepMs)}), the time is the pre-flight's reads,`,
        `already run at once and each archive hashed while it is read: zstd -d | tar x of the ~${sizeMB(b.volBytes)} volume and`,
        `of the base backup, pg_verifybackup of it, and the dump decompressed to prove it readable (raw volume extraction alone:`,
        `${s1(rawVol.ms)}; raw base-backup copy + start: ${s1(rawPhysMs)}) — on 2 vCPUs they take turns. The recipe checks`,
        'nothing before it starts: its restore is fast because it trusts the files. What would still help: pg_verifybackup',
        'at snapshot time (so the restore could skip its checksums, proven by the sha256 chain), or more cores.'
      ].join('\n')
    )
  if (logicalRatio < 0.9)
    notes.push(
      [
        `**Why the logical goal is missed.** logicalRestore first unpacks dump.tar.zst (${s1(logical.extractMs)}) — pg_restore -j needs`,
        `the dump as a directory, and backout stores it as one checksummed zstd file — then runs the same pg_restore -j2`,
        `(${s1(logical.restoreMs)} including CREATE DATABASE of the side database, vs ${s1(rawRestoreMs)} for createdb + pg_restore -j2),`,
        `then swaps and counts rows (${s1(logical.durationMs - logical.extractMs - logical.restoreMs)}). The restore itself is bound by COPY`,
        `and the two index builds on 2 vCPUs; the unpacking is the gap. In a rollback it is off the downtime: Level 3's and`,
        `Level 2's logical paths unpack the dump during the pre-flight check, while the service still runs, and the restore`,
        `starts pg_restore on that directory at once. On PostgreSQL 16+, pg_dump -Fd -Z zstd would let pg_restore read the`,
        `compressed files directly and remove the unpacking altogether.`
      ].join('\n')
    )
  const rows = record.steps.map(
    s => `| ${s.name} | ${secs(s.durationMs)} | ${s.detail.replace(/\|/g, '\\|').slice(0, 160)} |`
  )
  sections.push(
    [
      '## 4. Level 3 restore of the same',
      '',
      `The snapshot of section 3 restored (${sizeMB(b.dbBytes)} database + ${sizeMB(b.volBytes)} volume = ${sizeMB(total)}). ` +
        `MB/s = that total (or its part) / time. Disk: ${b.disk.writeMBs.toFixed(0)} MB/s sequential write, ` +
        `${b.disk.readMBs.toFixed(0)} MB/s read (dd, 1 GiB, fsync / O_DIRECT).`,
      '',
      `backout: \`rollback\` Level 3 with \`target\` = that snapshot, ${physical ? 'taking the physical path (base backup copy + recovery)' : 'taking the LOGICAL path'}; step by step from the run record:`,
      '',
      '| Step | Took | Detail |',
      '|---|---|---|',
      ...rows,
      `| **total (RTO)** | **${secs(record.durationMs)}** | runbook target 30 min |`,
      '',
      '| Method | What | Time | Rate |',
      '|---|---|---|---|',
      `| **backout** Level 3 | data volume restoration + database restoration (${physical ? 'physical' : 'logical'}) | **${s1(restoreMs)}** | ${rate(total, restoreMs)} |`,
      `| | the same plus the pre-flight checks (checksums, base backup extracted + pg_verifybackup, dump TOC) | ${s1(withPreflight)} | ${rate(total, withPreflight)} |`,
      `| | the whole Level 3 (assessment, emergency snapshot of the 2 GB, shutdown, restore, startup, verification) | ${secs(record.durationMs)} | |`,
      `| **backout** logicalRestore | extract dump.tar.zst + pg_restore -j2 into a side database + swap + row counts | **${s1(logical.durationMs)}** | ${rate(b.dbBytes, logical.durationMs)} |`,
      `| | of which extraction (zstd -d \\| tar x) / pg_restore / swap and counts | ${s1(logical.extractMs)} / ${s1(logical.restoreMs)} / ${s1(logical.durationMs - logical.extractMs - logical.restoreMs)} | |`,
      `| runbook recipe | gunzip \\| psql into a fresh database | ${s1(recipeDb.ms)} | ${rate(b.dbBytes, recipeDb.ms)} |`,
      `| | tar xzf of the volume | ${s1(recipeVolMs)} | ${rate(b.volBytes, recipeVolMs)} |`,
      `| | **total** | **${s1(recipeMs)}** | ${rate(total, recipeMs)} |`,
      `| raw tools | createdb + pg_restore -j2 from the directory dump | ${s1(rawRestoreMs)} | ${rate(b.dbBytes, rawRestoreMs)} |`,
      `| | base backup copy (cp -a) + start (WAL replay to consistency) | ${s1(rawPhysMs)} | ${rate(b.dbBytes, rawPhysMs)} |`,
      `| | zstd -d \\| tar x of the volume | ${s1(rawVol.ms)} | ${rate(b.volBytes, rawVol.ms)} |`,
      '',
      `**Physical path vs the recipe: ${physSpeed.toFixed(2)}×** (recipe ${s1(recipeMs)} / backout's pre-flight + restore steps ${s1(withPreflight)}; ` +
        `the restore steps alone: ${s1(restoreMs)}). Goal ≥ 3×: **${physical && physSpeed >= 3 ? 'met' : 'missed'}**.`,
      `**Logical path vs pg_restore -j2: ${logicalRatio.toFixed(2)}×** (pg_restore ${s1(rawRestoreMs)} / logicalRestore ${s1(logical.durationMs)}). ` +
        `Goal ≥ 0.9×: **${logicalRatio >= 0.9 ? 'met' : 'missed'}**.`,
      '',
      notes.join('\n\n') || 'Both goals met.',
      '',
      'Reproduce: `npm run bench -- --only=restore` (it takes the section 3 snapshot first, and reports it too)'
    ].join('\n')
  )
}

/** Sections 3 and 4 share one sandbox grown to ~1 GB + ~1 GB (blue live, no WAL archive). */
async function benchBig(restore: boolean): Promise<void> {
  await withSandbox(
    async (config, _url, state) => {
      if (state.db !== 'postgres' || !state.pgBinDir || !state.ports.postgres)
        throw new Error('sections 3 and 4 need PostgreSQL')
      const service = createService(loadConfig(config), log)
      const out = path.join(state.dir, 'bench')
      mkdirSync(out)
      const pgBin = state.pgBinDir
      const bin = (name: string): string => path.join(pgBin, name)
      const url = (db = 'app'): string => `postgresql://postgres@127.0.0.1:${state.ports.postgres}/${db}`
      const disk = await diskRate(out)
      let started = performance.now()
      const psqlArgs = FILL_SQL.flatMap(sql => ['-c', sql])
      await runChecked([bin('psql'), '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', url(), ...psqlArgs], {
        timeoutMs: 240_000
      })
      const fillDbMs = performance.now() - started
      const vol = service.config.data[0]!.path
      started = performance.now()
      fillVolume(vol, VOLUME_BYTES)
      const fillVolMs = performance.now() - started
      const [row] = await pgQuery<{ n: string }>(url(), 'SELECT pg_database_size(current_database()) AS n')
      const big: Big = {
        dir: state.dir,
        out,
        service,
        bin,
        url,
        state,
        vol,
        dbBytes: Number(row?.n ?? 0),
        volBytes: await duBytes(vol),
        disk,
        fillDbMs,
        fillVolMs
      }
      const snap = await benchSnapshot(big)
      if (restore) await benchRestore(big, snap)
    },
    { live: 'blue' }
  )
}

/** 5. Cold start of each bundle: node dist/<name>/index.js with nothing to do (no config: it refuses). */
async function benchColdStart(): Promise<void> {
  const rows: string[] = []
  for (const name of readdirSync(path.join(root, 'dist')).sort()) {
    const times: number[] = []
    for (let i = 0; i < 11; i++) {
      const started = performance.now()
      await runCommand(
        [process.execPath, path.join(root, 'dist', name, 'index.js'), ...(name === 'cli' ? ['--help'] : [])],
        {
          env: {
            PATH: process.env.PATH,
            INPUT_CONFIG: '/nonexistent/backout.yml',
            GITHUB_OUTPUT: '/dev/null'
          }
        }
      )
      times.push(performance.now() - started)
    }
    times.sort((a, b) => a - b)
    const median = times[5]!
    rows.push(
      `| ${name} | ${median.toFixed(0)} ms | ${times[0]!.toFixed(0)} ms | ${median <= 150 ? 'met' : 'missed'} |`
    )
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
      'dockerode (with ssh2 and gRPC) and @octokit/rest are bundled on their own beside each index.js and loaded on',
      'first use (scripts/build.mjs): a run that never touches Docker or GitHub does not parse them. What is left at',
      'start is mostly zod (config validation) and @actions/core, which loads undici for OIDC whether it is used or not.',
      '',
      'Reproduce: `npm run bench -- --only=coldstart`'
    ].join('\n')
  )
}

async function main(): Promise<void> {
  const started = new Date()
  if (only.includes('load')) await benchLoad()
  if (only.includes('rto')) await benchRto()
  if (only.includes('snapshot') || only.includes('restore')) await benchBig(only.includes('restore'))
  if (only.includes('coldstart')) await benchColdStart()
  const node = process.version
  const nginx =
    execFileSync('nginx', ['-v'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }) || 'nginx'
  const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${node}${nginx ? '' : ''}`
  // A partial run (--only) replaces its own sections and keeps the others, each with the date it was measured.
  const file = path.join(root, 'BENCHMARKS.md')
  const stamp = `_Measured ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC on ${machine}, loopback only._`
  const fresh = new Map(sections.map(s => [s.split('\n')[0]!, `${s}\n\n${stamp}`]))
  const kept = new Map<string, string>()
  if (existsSync(file))
    for (const part of readFileSync(file, 'utf8')
      .split(/\n(?=## )/)
      .slice(1))
      kept.set(part.split('\n')[0]!, part.trimEnd())
  for (const [heading, body] of fresh) kept.set(heading, body)
  const text = [
    '# backout benchmarks',
    '',
    'Every figure comes from `npm run bench` (scripts/bench.ts); each section names the command that reproduces it',
    'and says when and where it was measured.',
    '',
    ...[...kept.entries()].sort(([a], [b]) => a.localeCompare(b)).flatMap(([, body]) => [body, ''])
  ].join('\n')
  writeFileSync(file, text)
  // Formatted as the repository's other Markdown is (CI checks it).
  await runChecked([path.join(root, 'node_modules/.bin/prettier'), '--write', file])
  process.stdout.write(text)
}

void main().catch((e: unknown) => {
  console.error(e)
  process.exitCode = 1
})
