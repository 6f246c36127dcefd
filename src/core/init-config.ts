import { Document, isMap, isScalar } from 'yaml'
import type { Color } from './config'

/**
 * What `backout init` can find out about a service on its host, each fact with where it came from. Nothing
 * here changes anything: files are read, processes' /proc entries looked at, local ports probed.
 */
export interface DetectedTarget {
  version?: string
  upstream?: string
  process?: { command: string[]; cwd?: string; pidFile: string; logFile?: string }
  compose?: { project: string; file: string; service: string }
  systemd?: { unit: string }
}

export interface Detected {
  dir: string
  service?: string
  runtime?: 'process' | 'compose' | 'systemd'
  nginx?: {
    upstreamFile: string
    upstreamName: string
    live?: string
    url?: string
    test?: string[]
    reload?: string[]
  }
  targets: Partial<Record<Color, DetectedTarget>>
  database?:
    | { kind: 'postgres'; url: string; dataDir?: string; walArchiveDir?: string; passwordVar?: string }
    | { kind: 'sqlite'; path: string }
  migrations?: { kind: 'sql'; dir: string } | { kind: 'alembic'; ini: string }
  data: { name: string; path: string }[]
  configFiles: string[]
  prometheus?: string
  /** Where each fact came from, for the comments of the written file. */
  notes: string[]
}

/** What the user said (flags, or answers on a terminal): each overrides what was detected. */
export interface InitAnswers {
  service?: string
  environment?: string
  runtime?: 'process' | 'compose' | 'systemd'
  nginxUpstreamFile?: string
  nginxUrl?: string
  blueUpstream?: string
  greenUpstream?: string
  blueVersion?: string
  greenVersion?: string
  blueUnit?: string
  greenUnit?: string
  databaseUrl?: string
  backupsDir?: string
  stateDir?: string
  prometheusUrl?: string
}

export interface Question {
  key: keyof InitAnswers
  flag: string
  question: string
  default?: string
}

/** The answers detection could not give, in the order a person would answer them. */
export function missingAnswers(d: Detected, a: InitAnswers): Question[] {
  const q: Question[] = []
  const ask = (key: keyof InitAnswers, flag: string, question: string, have: unknown, def?: string): void => {
    if (a[key] === undefined && (have === undefined || have === ''))
      q.push({ key, flag, question, default: def })
  }
  ask('service', '--service', 'the service name (letters, digits, . _ -)', d.service)
  ask('runtime', '--runtime', 'how the two targets run: process, compose or systemd', d.runtime)
  ask(
    'nginxUpstreamFile',
    '--nginx-upstream-file',
    'the nginx file holding the upstream block',
    d.nginx?.upstreamFile
  )
  ask('nginxUrl', '--nginx-url', 'the URL nginx serves the app on', d.nginx?.url, 'http://127.0.0.1')
  for (const color of ['blue', 'green'] as const) {
    const t = d.targets[color]
    ask(
      `${color}Upstream`,
      `--${color}-upstream`,
      `the host:port nginx proxies to when ${color} is live`,
      t?.upstream
    )
    ask(`${color}Version`, `--${color}-version`, `the version ${color} runs (e.g. v2.4.9)`, t?.version)
    const runtime = a.runtime ?? d.runtime
    if (runtime === 'systemd')
      ask(`${color}Unit`, `--${color}-unit`, `the systemd unit of ${color}`, t?.systemd?.unit)
  }
  return q
}

const rel = (base: string, p: string): string => {
  const r = p.startsWith(base + '/') ? p.slice(base.length + 1) : p
  return r || '.'
}

/** backout.yml as an object, from what was detected and what was answered. Paths relative to `base`. */
export function buildConfig(d: Detected, a: InitAnswers, base: string): Record<string, unknown> {
  const service = a.service ?? d.service ?? 'service'
  const runtime = a.runtime ?? d.runtime ?? 'process'
  const target = (color: Color): Record<string, unknown> => {
    const t = d.targets[color] ?? {}
    const out: Record<string, unknown> = {
      version: a[`${color}Version`] ?? t.version,
      upstream: a[`${color}Upstream`] ?? t.upstream
    }
    if (runtime === 'process' && t.process)
      out.process = {
        command: t.process.command,
        ...(t.process.cwd ? { cwd: rel(base, t.process.cwd) } : {}),
        pidFile: rel(base, t.process.pidFile),
        ...(t.process.logFile ? { logFile: rel(base, t.process.logFile) } : {})
      }
    if (runtime === 'compose')
      out.compose = t.compose
        ? { ...t.compose, file: rel(base, t.compose.file) }
        : { project: `${service}-${color}`, file: 'docker-compose.yml', service: 'app' }
    if (runtime === 'systemd') out.systemd = { unit: a[`${color}Unit`] ?? t.systemd?.unit }
    return out
  }
  const n = d.nginx
  const db = d.database
  let database: Record<string, unknown> | undefined
  const url = a.databaseUrl ?? (db?.kind === 'postgres' ? db.url : undefined)
  if (url)
    database = {
      kind: 'postgres',
      url,
      ...(db?.kind === 'postgres' && db.dataDir ? { dataDir: rel(base, db.dataDir) } : {}),
      ...(db?.kind === 'postgres' && db.walArchiveDir ? { walArchiveDir: rel(base, db.walArchiveDir) } : {})
    }
  else if (db?.kind === 'sqlite') database = { kind: 'sqlite', path: rel(base, db.path) }
  if (database) {
    database.criticalTables = []
    if (d.migrations)
      database.migrations =
        d.migrations.kind === 'sql'
          ? { kind: 'sql', dir: rel(base, d.migrations.dir) }
          : { kind: 'alembic', ini: rel(base, d.migrations.ini) }
  }
  const prometheus = a.prometheusUrl ?? d.prometheus
  return {
    service,
    environment: a.environment ?? 'production',
    runtime,
    targets: { blue: target('blue'), green: target('green') },
    nginx: {
      upstreamFile: rel(base, a.nginxUpstreamFile ?? n?.upstreamFile ?? ''),
      upstreamName: n?.upstreamName ?? 'backend',
      url: a.nginxUrl ?? n?.url ?? 'http://127.0.0.1',
      ...(n?.test ? { test: n.test, reload: n.reload } : {})
    },
    ...(database ? { database } : {}),
    configFiles: d.configFiles.map(f => rel(base, f)),
    data: d.data.map(x => ({ name: x.name, path: rel(base, x.path) })),
    backups: { dir: a.backupsDir ?? `/var/backups/backout/${service}`, keep: 10, keepDays: 7 },
    ...(a.stateDir ? { state: { dir: a.stateDir } } : {}),
    ...(prometheus ? { prometheus: { url: prometheus } } : {})
  }
}

/** Comments on the top-level keys of the written file: what to check, where a value came from. */
const KEY_COMMENTS: Record<string, string> = {
  targets: ' The two blue/green targets: nginx points at one of them, the other is the rollback target.',
  nginx: ' backout rewrites the upstream block, runs `test`, then `reload` (both need the rights to).',
  database:
    ' criticalTables: the tables whose row counts validate compares after a rollback — list yours.\n' +
    ' ${VAR}s come from the runner environment or the BACKOUT_ENV secret, never from this file.',
  configFiles: ' Files every snapshot captures and Level 2 restores.',
  data: ' Data directories Level 3 restores from a backup.',
  backups:
    ' Outside the repository (a checkout must not wipe them), with room for `keep` backups.\n' +
    ' state.dir (locks, run records, the seal key) defaults to /var/lib/backout/<service>.'
}

export function renderConfig(config: Record<string, unknown>, d: Detected): string {
  const doc = new Document(config)
  if (isMap(doc.contents))
    for (const pair of doc.contents.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : ''
      if (KEY_COMMENTS[key] && isScalar(pair.key)) pair.key.commentBefore = KEY_COMMENTS[key]
    }
  const header = [
    '# yaml-language-server: $schema=https://raw.githubusercontent.com/backout/backout/v1/docs/config.schema.json',
    '# backout.yml — written by `backout init`; every key is documented in docs/config.md.',
    '# Detected:',
    ...d.notes.map(n => `#   - ${n}`),
    '# Check it: backout doctor; then backout rollback --level 1 --dry-run (changes nothing).',
    ''
  ]
  return header.join('\n') + doc.toString({ lineWidth: 0 })
}
