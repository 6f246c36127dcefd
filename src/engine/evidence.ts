import { copyFileSync, existsSync, lstatSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import type { Config } from '../core/config'
import { messageOf } from '../core/errors'
import { sha256File } from '../drivers/archive'
import { runCommand } from '../drivers/exec'
import { logicalDump } from '../drivers/postgres-backup'

/**
 * What the runbook's Security Breach procedure collects beyond logs and configs: what nginx really listens on and
 * logs to (from `nginx -T`, the configuration nginx itself reads), a listing with hashes of the data dirs, and a
 * dump of the database.
 */

export interface NginxFacts {
  /** TCP ports of every `listen` directive. */
  ports: number[]
  /** access_log and error_log files named in the configuration. */
  logFiles: string[]
  /** The full configuration as nginx reads it, or why it could not be read. */
  dump: string
}

/** `nginx -T` with the configured test command's arguments (its -p/-c say which nginx this is). */
export async function nginxFacts(config: Config): Promise<NginxFacts> {
  const argv = config.nginx.test.filter(a => a !== '-q').map(a => (a === '-t' ? '-T' : a))
  if (!argv.includes('-T')) argv.push('-T')
  const res = await runCommand(argv, { timeoutMs: 15_000 }).catch((e: unknown) => ({
    code: 1,
    stdout: '',
    stderr: messageOf(e)
  }))
  if (res.code !== 0) {
    const url = new URL(config.nginx.url)
    const port = Number(url.port || (url.protocol === 'https:' ? 443 : 80))
    return { ports: [port], logFiles: [], dump: `nginx -T failed (exit ${res.code}): ${res.stderr.trim()}` }
  }
  return { ...parseNginxConfig(res.stdout), dump: res.stdout }
}

/** The listen ports and log files of an nginx configuration (`nginx -T` output or one file). Pure. */
export function parseNginxConfig(text: string): { ports: number[]; logFiles: string[] } {
  const ports = new Set<number>()
  const logFiles = new Set<string>()
  const code = text
    .split('\n')
    .map(l => l.replace(/(^|\s)#.*$/, ''))
    .join('\n')
  for (const m of code.matchAll(/(?:^|[;{}\s])listen\s+([^;\s]+)[^;]*;/g)) {
    const spec = m[1]!
    if (spec.startsWith('unix:')) continue
    const port =
      /(?:^|:)(\d+)$/.exec(spec)?.[1] ?? (/^[\d.]+$|^\[.*\]$|^[a-z]/i.test(spec) ? '80' : undefined)
    if (port) ports.add(Number(port))
  }
  for (const m of code.matchAll(/(?:^|[;{}\s])(?:access_log|error_log)\s+([^;\s]+)/g)) {
    const file = m[1]!
    if (file !== 'off' && file.startsWith('/')) logFiles.add(file)
  }
  return { ports: [...ports].sort((a, b) => a - b), logFiles: [...logFiles] }
}

/** The firewall commands that block the ports nginx listens on (IPv4 and IPv6), exactly as to be run. */
export function blockCommands(ports: readonly number[]): string[] {
  return ports.flatMap(p => [
    `sudo iptables -I INPUT -p tcp --dport ${p} -j DROP`,
    `sudo ip6tables -I INPUT -p tcp --dport ${p} -j DROP`
  ])
}

/** `sha256  size  mode  mtime  path` for every file under dir (symlinks listed, not followed). */
export async function dataListing(dir: string): Promise<string[]> {
  if (!existsSync(dir)) return [`# ${dir}: does not exist`]
  const out: string[] = []
  const walk = async (d: string): Promise<void> => {
    for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const full = path.join(d, e.name)
      const st = lstatSync(full)
      const mode = (st.mode & 0o7777).toString(8).padStart(4, '0')
      if (e.isDirectory()) {
        out.push(`${'-'.repeat(64)}  ${'dir'.padStart(10)}  ${mode}  ${st.mtime.toISOString()}  ${full}/`)
        await walk(full)
      } else if (e.isFile())
        out.push(
          `${await sha256File(full)}  ${String(st.size).padStart(10)}  ${mode}  ${st.mtime.toISOString()}  ${full}`
        )
      else out.push(`${'-'.repeat(64)}  ${'other'.padStart(10)}  ${mode}  ${st.mtime.toISOString()}  ${full}`)
    }
  }
  await walk(dir)
  return out
}

/** A dump of the database into dir: pg_dump (PostgreSQL) or a copy of the file (SQLite). Returns what was written. */
export async function databaseEvidence(config: Config, dir: string): Promise<string> {
  const db = config.database
  if (!db) return 'no database configured'
  mkdirSync(dir, { recursive: true })
  if (db.kind === 'postgres') {
    const r = await logicalDump({
      url: db.url,
      binDir: db.binDir,
      outFile: path.join(dir, 'dump.tar.zst'),
      jobs: 1
    })
    writeFileSync(path.join(dir, 'row-counts.json'), JSON.stringify(r.rowCounts, null, 2) + '\n')
    return `pg_dump of ${r.database} (${r.size} bytes, snapshot ${r.snapshotTime})`
  }
  copyFileSync(db.path, path.join(dir, path.basename(db.path)))
  return `copy of ${db.path}`
}
