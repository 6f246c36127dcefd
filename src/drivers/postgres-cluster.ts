import {
  chownSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  writeFileSync,
  appendFileSync
} from 'node:fs'
import { userInfo } from 'node:os'
import path from 'node:path'
import { runChecked, runCommand } from './exec'
import { pgCommandConnection } from './postgres/credentials'

/**
 * A PostgreSQL cluster that backout starts itself (no systemd): initdb into a directory, start it on its own
 * port and socket directory, stop it by PID. Used by the sandbox and by tests against a real server.
 */
export interface ClusterOptions {
  /** The data directory. */
  dataDir: string
  port: number
  /** Where the unix socket goes; defaults to the data directory's parent /run. */
  socketDir?: string
  /** Extra postgresql.conf lines, e.g. WAL archiving. */
  settings?: Record<string, string>
  /**
   * How to connect (user, password, host, port): the service's database.url. url(database) then keeps its user and
   * password and only changes the database. Default: the superuser postgres over TCP on loopback, no password.
   */
  connectUrl?: string
}

export interface Cluster {
  dataDir: string
  port: number
  socketDir: string
  binDir: string
  /** A connection string (connectUrl's user and password, else the superuser `postgres`) over TCP on loopback. */
  url(database?: string): string
}

/** Finds the PostgreSQL binaries: $BACKOUT_PG_BIN, else the newest /usr/lib/postgresql/N/bin. */
export function findPgBinDir(): string | undefined {
  const fromEnv = process.env.BACKOUT_PG_BIN
  if (fromEnv && existsSync(path.join(fromEnv, 'initdb'))) return fromEnv
  const root = '/usr/lib/postgresql'
  if (!existsSync(root)) return undefined
  const versions = readdirSync(root)
    .filter(v => existsSync(path.join(root, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a))
  return versions[0] ? path.join(root, versions[0], 'bin') : undefined
}

function requireBinDir(): string {
  const dir = findPgBinDir()
  if (!dir) throw new Error('PostgreSQL binaries not found — install postgresql-15 or set BACKOUT_PG_BIN')
  return dir
}

/** PostgreSQL refuses to run as root: as root, its tools run as the `postgres` user. */
function asOwner(argv: string[]): string[] {
  return userInfo().uid === 0 ? ['runuser', '-u', 'postgres', '--', ...argv] : argv
}

function postgresIds(): { uid: number; gid: number } | undefined {
  if (userInfo().uid !== 0) return undefined
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find(l => l.startsWith('postgres:'))
  if (!line) throw new Error('user postgres not found — install postgresql-15 (it creates the user)')
  const [, , uid, gid] = line.split(':')
  return { uid: Number(uid), gid: Number(gid) }
}

/** Creates a directory owned by the user PostgreSQL runs as. */
export function mkdirForPostgres(dir: string, mode = 0o700): void {
  mkdirSync(dir, { recursive: true, mode })
  const ids = postgresIds()
  if (ids) chownSync(dir, ids.uid, ids.gid)
}

export function describeCluster(options: ClusterOptions, binDir = requireBinDir()): Cluster {
  const socketDir = options.socketDir ?? path.join(path.dirname(options.dataDir), 'run')
  return {
    dataDir: options.dataDir,
    port: options.port,
    socketDir,
    binDir,
    url: (database = 'postgres') => {
      if (!options.connectUrl) return `postgresql://postgres@127.0.0.1:${options.port}/${database}`
      const u = new URL(options.connectUrl)
      u.pathname = `/${encodeURIComponent(database)}`
      return u.toString()
    }
  }
}

/** initdb (trust auth on loopback — a sandbox and test cluster) and the settings given. */
export async function initCluster(options: ClusterOptions): Promise<Cluster> {
  const cluster = describeCluster(options)
  mkdirForPostgres(options.dataDir)
  mkdirForPostgres(cluster.socketDir, 0o755)
  await runChecked(
    asOwner([
      path.join(cluster.binDir, 'initdb'),
      '-D',
      options.dataDir,
      '-U',
      'postgres',
      '--auth=trust',
      '--no-sync',
      '-E',
      'UTF8'
    ])
  )
  const settings: Record<string, string> = {
    listen_addresses: "'127.0.0.1'",
    port: String(options.port),
    unix_socket_directories: `'${cluster.socketDir}'`,
    fsync: 'on',
    ...options.settings
  }
  appendFileSync(
    path.join(options.dataDir, 'postgresql.conf'),
    '\n# backout\n' +
      Object.entries(settings)
        .map(([k, v]) => `${k} = ${v}`)
        .join('\n') +
      '\n'
  )
  return cluster
}

export async function startCluster(cluster: Cluster, logFile: string): Promise<number> {
  if (!existsSync(logFile)) writeFileSync(logFile, '')
  const ids = postgresIds()
  if (ids) chownSync(logFile, ids.uid, ids.gid)
  await runChecked(
    asOwner([
      path.join(cluster.binDir, 'pg_ctl'),
      '-D',
      cluster.dataDir,
      '-l',
      logFile,
      '-w',
      '-t',
      '60',
      '-o',
      `-p ${cluster.port} -k ${cluster.socketDir}`,
      'start'
    ])
  )
  return clusterPid(cluster.dataDir) ?? 0
}

/** The postmaster PID from postmaster.pid, when the cluster runs. */
export function clusterPid(dataDir: string): number | undefined {
  const file = path.join(dataDir, 'postmaster.pid')
  if (!existsSync(file)) return undefined
  const pid = Number(readFileSync(file, 'utf8').split('\n')[0])
  return Number.isInteger(pid) && pid > 0 ? pid : undefined
}

/** Stops the cluster (fast mode: rolls back open transactions, no data lost). */
export async function stopCluster(
  cluster: Pick<Cluster, 'dataDir' | 'binDir'>,
  mode = 'fast'
): Promise<void> {
  if (!clusterPid(cluster.dataDir)) return
  const res = await runCommand(
    asOwner([
      path.join(cluster.binDir, 'pg_ctl'),
      '-D',
      cluster.dataDir,
      '-m',
      mode,
      '-w',
      '-t',
      '60',
      'stop'
    ])
  )
  if (res.code !== 0 && clusterPid(cluster.dataDir))
    throw new Error(`pg_ctl stop failed: ${res.stderr.trim()}`)
}

/** Runs SQL through psql as the superuser: for setup in the sandbox and tests. */
export async function psql(cluster: Cluster, database: string, sql: string): Promise<string> {
  const conn = pgCommandConnection(cluster.url(database))
  const res = await runChecked(
    [path.join(cluster.binDir, 'psql'), '-X', '-v', 'ON_ERROR_STOP=1', '-qAt', '-d', conn.url],
    { input: sql, env: conn.env }
  )
  return res.stdout
}

/** An argv that runs as the user PostgreSQL runs as (via runuser when backout runs as root). */
export function asPostgresUser(argv: string[]): string[] {
  return asOwner(argv)
}

/** Gives a file or directory to the user PostgreSQL runs as (when backout runs as root). */
export function chownForPostgres(file: string): void {
  const ids = postgresIds()
  if (ids) chownSync(file, ids.uid, ids.gid)
}
