import { existsSync, readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs'
import path from 'node:path'
import { parse as parseYaml } from 'yaml'
import type { Detected } from '../core/init-config'
import { parseUpstream } from '../core/upstream'
import { pgQuery } from './database'
import { runCommand } from './exec'
import { field, probe } from './http'

const readText = (f: string): string | undefined => {
  try {
    return readFileSync(f, 'utf8')
  } catch {
    return undefined
  }
}
const isDir = (p: string): boolean => existsSync(p) && statSync(p).isDirectory()
const listDir = (d: string): string[] => (isDir(d) ? readdirSync(d).sort() : [])

/** KEY=value lines of a .env file (quotes stripped). */
export function parseDotEnv(text: string): Record<string, string> {
  const env: Record<string, string> = {}
  for (const line of text.split('\n')) {
    const m = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$/.exec(line)
    if (m) env[m[1]!] = m[2]!.replace(/^(['"])(.*)\1$/, '$2')
  }
  return env
}

/** nginx files that may hold the upstream block: the app's own, then the host's. */
function nginxCandidates(dir: string, etc: string): string[] {
  const files: string[] = []
  for (const d of [dir, path.join(dir, 'nginx'), path.join(dir, 'deploy/nginx')])
    for (const f of listDir(d)) if (f.endsWith('.conf')) files.push(path.join(d, f))
  for (const d of [path.join(etc, 'conf.d'), path.join(etc, 'sites-enabled')])
    for (const f of listDir(d)) files.push(path.join(d, f))
  return files
}

function detectNginx(dir: string, etc: string, d: Detected): void {
  for (const file of nginxCandidates(dir, etc)) {
    const text = readText(file) ?? ''
    const m = /upstream\s+([A-Za-z0-9_]+)\s*\{/.exec(text)
    if (!m) continue
    const name = m[1]!
    d.nginx = { upstreamFile: file, upstreamName: name, live: parseUpstream(text, name) }
    d.notes.push(`nginx.upstreamFile: upstream "${name}" found in ${file}`)
    // An nginx of the app's own (its own nginx.conf with a pid file): test and reload that one.
    const own = path.join(path.dirname(file), 'nginx.conf')
    const conf = readText(own)
    if (conf && !file.startsWith(etc + path.sep)) {
      const prefix = path.dirname(own)
      d.nginx.test = ['nginx', '-t', '-q', '-p', prefix, '-c', own]
      d.nginx.reload = ['nginx', '-p', prefix, '-c', own, '-s', 'reload']
      d.notes.push(`nginx.test/reload: nginx runs with its own config ${own}`)
    }
    const serverConf = conf ?? text
    const listen = /listen\s+(?:(\d+\.\d+\.\d+\.\d+):)?(\d+)/.exec(serverConf)
    if (listen) d.nginx.url = `http://${listen[1] ?? '127.0.0.1'}:${listen[2]}`
    return
  }
}

/** A running process's argv, working directory and stdout file, from /proc. */
function procInfo(pid: number): { command: string[]; cwd?: string; logFile?: string } | undefined {
  const raw = readText(`/proc/${pid}/cmdline`)
  if (!raw) return undefined
  const command = raw.split('\0').filter(Boolean)
  const link = (p: string): string | undefined => {
    try {
      return readlinkSync(p)
    } catch {
      return undefined
    }
  }
  const out = link(`/proc/${pid}/fd/1`)
  return { command, cwd: link(`/proc/${pid}/cwd`), logFile: out?.startsWith('/') ? out : undefined }
}

function detectProcesses(dir: string, d: Detected): void {
  for (const color of ['blue', 'green'] as const) {
    for (const sub of ['run', '.', 'pids']) {
      const pidFile = path.join(dir, sub, `${color}.pid`)
      const pid = Number((readText(pidFile) ?? '').trim())
      if (!Number.isInteger(pid) || pid <= 0) continue
      const info = procInfo(pid)
      if (!info) continue
      const t = (d.targets[color] ??= {})
      t.process = { command: info.command, cwd: info.cwd, pidFile, logFile: info.logFile }
      const port = info.command.indexOf('--port')
      if (port >= 0 && info.command[port + 1]) t.upstream = `127.0.0.1:${info.command[port + 1]}`
      d.runtime ??= 'process'
      d.notes.push(`targets.${color}.process: PID ${pid} from ${pidFile} (its command line from /proc)`)
      break
    }
  }
}

function detectCompose(dir: string, d: Detected): void {
  const file = ['docker-compose.yml', 'docker-compose.yaml', 'compose.yml', 'compose.yaml']
    .map(f => path.join(dir, f))
    .find(f => existsSync(f))
  if (!file || d.runtime) return
  let services: Record<string, { ports?: unknown[]; image?: string }> = {}
  try {
    services =
      ((parseYaml(readFileSync(file, 'utf8')) ?? {}) as { services?: typeof services }).services ?? {}
  } catch {
    return
  }
  const app = Object.entries(services).find(([, s]) => s.ports?.length) ?? Object.entries(services)[0]
  if (!app) return
  d.runtime = 'compose'
  const base = d.service ?? path.basename(dir)
  for (const color of ['blue', 'green'] as const)
    (d.targets[color] ??= {}).compose = { project: `${base}-${color}`, file, service: app[0] }
  const tag = /:([^:/@]+)$/.exec(app[1].image ?? '')?.[1]
  if (tag && !tag.includes('$')) d.notes.push(`image tag ${tag} in ${file}`)
  d.notes.push(
    `runtime compose: ${file}, service "${app[0]}" (projects ${base}-blue / ${base}-green — check them)`
  )
}

async function detectSystemd(service: string | undefined, d: Detected): Promise<void> {
  if (d.runtime || !service) return
  const res = await runCommand(
    ['systemctl', 'list-unit-files', '--no-legend', '--plain', `${service}*.service`],
    { timeoutMs: 5000 }
  ).catch(() => undefined)
  if (!res || res.code !== 0) return
  const units = res.stdout.split('\n').map(l => l.split(/\s+/)[0] ?? '')
  for (const color of ['blue', 'green'] as const) {
    const unit = units.find(u => u.includes(color))
    if (unit) {
      ;(d.targets[color] ??= {}).systemd = { unit }
      d.runtime = 'systemd'
      d.notes.push(`targets.${color}.systemd.unit: ${unit} (systemctl list-unit-files)`)
    }
  }
}

/** The version a target reports on /health or /status (a `version` field), when it runs. */
async function detectVersions(d: Detected): Promise<void> {
  for (const color of ['blue', 'green'] as const) {
    const t = d.targets[color]
    if (!t?.upstream || t.version) continue
    for (const p of ['/health', '/status', '/version']) {
      const res = await probe(`http://${t.upstream}${p}`, 1500)
      const v = field(res.json, 'version')
      if (res.ok && typeof v === 'string') {
        t.version = v
        d.notes.push(`targets.${color}.version: ${v} from http://${t.upstream}${p}`)
        break
      }
    }
  }
}

async function detectDatabase(dir: string, d: Detected): Promise<void> {
  for (const envFile of ['.env', 'config/.env']) {
    const text = readText(path.join(dir, envFile))
    if (!text) continue
    const env = parseDotEnv(text)
    const raw = env.DATABASE_URL ?? env.DB_URL ?? env.SQLALCHEMY_DATABASE_URI
    if (!raw) continue
    if (/^postgres(ql)?(\+\w+)?:\/\//.test(raw)) {
      // The password never goes into backout.yml: it becomes ${DB_PASSWORD}, set on the runner.
      const u = new URL(raw.replace(/^postgres(ql)?(\+\w+)?:/, 'postgresql:'))
      const hadPassword = u.password !== ''
      u.password = ''
      const url = u
        .toString()
        .replace(/^postgresql:\/\/([^@/]*)@/, (_, user: string) =>
          hadPassword ? `postgresql://${user}:\${DB_PASSWORD}@` : `postgresql://${user}@`
        )
      d.database = { kind: 'postgres', url, passwordVar: hadPassword ? 'DB_PASSWORD' : undefined }
      d.notes.push(
        `database.url: DATABASE_URL in ${envFile}${hadPassword ? ' (its password replaced by ${DB_PASSWORD}: set DB_PASSWORD on the runner or in the BACKOUT_ENV secret)' : ''}`
      )
      return
    }
    const sqlite = /^sqlite:\/\/\/(.+)$/.exec(raw)
    if (sqlite) {
      d.database = { kind: 'sqlite', path: sqlite[1]! }
      d.notes.push(`database.path: DATABASE_URL in ${envFile}`)
      return
    }
  }
  // A cluster of the app's own (a data directory under the app): its port from postmaster.pid.
  for (const sub of ['pg/data', 'postgres/data', 'pgdata']) {
    const dataDir = path.join(dir, sub)
    const pidLines = (readText(path.join(dataDir, 'postmaster.pid')) ?? '').split('\n')
    const port = Number(pidLines[3])
    if (!existsSync(path.join(dataDir, 'PG_VERSION')) || !port) continue
    const admin = `postgresql://postgres@127.0.0.1:${port}/postgres`
    const dbs = await pgQuery<{ datname: string }>(
      admin,
      "SELECT datname FROM pg_database WHERE NOT datistemplate AND datname <> 'postgres' ORDER BY datname"
    ).catch(() => [])
    if (dbs.length !== 1) continue
    const archive = path.join(path.dirname(dataDir), 'wal-archive')
    d.database = {
      kind: 'postgres',
      url: `postgresql://postgres@127.0.0.1:${port}/${dbs[0]!.datname}`,
      dataDir,
      walArchiveDir: isDir(archive) ? archive : undefined
    }
    d.notes.push(`database: PostgreSQL cluster ${dataDir} on port ${port}, database ${dbs[0]!.datname}`)
    return
  }
  for (const f of listDir(path.join(dir, 'data')))
    if (/\.(db|sqlite3?)$/.test(f)) {
      d.database = { kind: 'sqlite', path: path.join(dir, 'data', f) }
      d.notes.push(`database.path: SQLite file data/${f}`)
      return
    }
}

function detectFiles(dir: string, d: Detected): void {
  if (isDir(path.join(dir, 'migrations/rollback'))) {
    d.migrations = { kind: 'sql', dir: path.join(dir, 'migrations') }
    d.notes.push('database.migrations: migrations/rollback/ holds the down scripts')
  } else if (existsSync(path.join(dir, 'alembic.ini'))) {
    d.migrations = { kind: 'alembic', ini: path.join(dir, 'alembic.ini') }
    d.notes.push('database.migrations: alembic.ini')
  }
  for (const sub of listDir(path.join(dir, 'data'))) {
    const p = path.join(dir, 'data', sub)
    if (isDir(p) && /^[A-Za-z0-9_.-]+$/.test(sub)) d.data.push({ name: `${sub}-data`, path: p })
  }
  if (d.data.length) d.notes.push(`data: ${d.data.map(x => x.path).join(', ')}`)
  const candidates = [
    '.env',
    'config/.env',
    'docker-compose.yml',
    'compose.yml',
    'monitoring/prometheus.yml',
    ...listDir(path.join(dir, 'config')).map(f => `config/${f}`),
    ...(d.nginx?.test ? [path.relative(dir, d.nginx.test[6]!)] : [])
  ]
  for (const rel of candidates) {
    const p = path.join(dir, rel)
    if (existsSync(p) && statSync(p).isFile() && !d.configFiles.includes(p)) d.configFiles.push(p)
  }
}

export interface DetectOptions {
  dir: string
  service?: string
  /** The host's nginx directory (default /etc/nginx). */
  nginxEtc?: string
  /** Where Prometheus may answer (default http://127.0.0.1:9090). */
  prometheusUrl?: string
}

export async function detectHost(options: DetectOptions): Promise<Detected> {
  const dir = path.resolve(options.dir)
  const d: Detected = { dir, service: options.service, targets: {}, data: [], configFiles: [], notes: [] }
  detectNginx(dir, options.nginxEtc ?? '/etc/nginx', d)
  detectProcesses(dir, d)
  detectCompose(dir, d)
  await detectSystemd(d.service, d)
  // The live target is the one nginx points at; a target whose upstream is unknown may be matched by it.
  await detectVersions(d)
  await detectDatabase(dir, d)
  detectFiles(dir, d)
  const prom = options.prometheusUrl ?? 'http://127.0.0.1:9090'
  if ((await probe(`${prom}/-/ready`, 800)).ok) {
    d.prometheus = prom
    d.notes.push(`prometheus.url: ${prom} answers /-/ready`)
  }
  return d
}
