import { accessSync, constants, existsSync, readFileSync, statSync, statfsSync } from 'node:fs'
import path from 'node:path'
import type { Config } from '../core/config'
import { messageOf } from '../core/errors'
import { configWarnings, gitWorkTreeOf } from '../drivers/config-warnings'
import { pgQuery } from '../drivers/database'
import { runCommand } from '../drivers/exec'
import { findPgBinDir } from '../drivers/postgres-cluster'
import type { Service } from './service'
import { verifyBackup } from './verify'

/**
 * `backout doctor`: the host and the config checked before the day they are needed. Each check says what
 * it found and, when it is not ok, what to do. Nothing is changed (the optional drill restores into scratch).
 */
export interface DoctorCheck {
  name: string
  status: 'ok' | 'warn' | 'fail'
  detail: string
  fix?: string
}

export interface DoctorOptions {
  /** Also run a restore drill of the newest backup (backout verify). */
  drill?: boolean
  /** The self-hosted runner's directory (holds externals/node24 on runners that can run node24 actions). */
  runnerDir?: string
  /** The user doctor checks for (default: the current one). */
  uid?: number
}

const ok = (name: string, detail: string): DoctorCheck => ({ name, status: 'ok', detail })
const warn = (name: string, detail: string, fix: string): DoctorCheck => ({
  name,
  status: 'warn',
  detail,
  fix
})
const fail = (name: string, detail: string, fix: string): DoctorCheck => ({
  name,
  status: 'fail',
  detail,
  fix
})

async function version(argv: string[]): Promise<string | undefined> {
  const res = await runCommand(argv, { timeoutMs: 10_000 }).catch(() => undefined)
  return res && res.code === 0 ? (res.stdout + res.stderr).trim().split('\n')[0] : undefined
}

/** The nearest existing ancestor of p (p itself when it exists). */
function existingAncestor(p: string): string {
  let dir = p
  while (!existsSync(dir) && path.dirname(dir) !== dir) dir = path.dirname(dir)
  return dir
}

const writable = (p: string): boolean => {
  try {
    accessSync(p, constants.W_OK)
    return true
  } catch {
    return false
  }
}

/** The filesystem type under p, from /proc/mounts (the longest mount point that holds it). */
function fsTypeOf(p: string): string | undefined {
  const mounts = existsSync('/proc/mounts') ? readFileSync('/proc/mounts', 'utf8').split('\n') : []
  let best: { point: string; type: string } | undefined
  for (const line of mounts) {
    const [, point, type] = line.split(' ')
    if (!point || !type) continue
    if (
      (p === point || p.startsWith(point.endsWith('/') ? point : point + '/')) &&
      point.length >= (best?.point.length ?? 0)
    )
      best = { point, type }
  }
  return best?.type
}

function stateChecks(config: Config): DoctorCheck[] {
  const checks: DoctorCheck[] = []
  const dir = config.state.dir
  const there = existingAncestor(dir)
  const user = process.env.USER ?? 'the runner user'
  if (existsSync(dir) ? !writable(dir) : !writable(there))
    checks.push(
      fail(
        'state.dir',
        `${dir} ${existsSync(dir) ? 'is not writable' : `does not exist and ${there} is not writable`} by this user`,
        `create it for the user backout runs as: sudo install -d -m 700 -o ${user} ${dir} (or set state.dir)`
      )
    )
  else if (gitWorkTreeOf(dir))
    checks.push(
      warn(
        'state.dir',
        `${dir} is inside the git work tree ${gitWorkTreeOf(dir)}: a checkout may wipe the locks and the seal key`,
        `set state.dir to a path outside it, e.g. /var/lib/backout/${config.service}`
      )
    )
  else {
    const type = fsTypeOf(path.resolve(there))
    checks.push(
      type === 'tmpfs'
        ? warn(
            'state.dir',
            `${dir} is on tmpfs: lost at reboot`,
            `set state.dir on a persistent disk, e.g. /var/lib/backout/${config.service}`
          )
        : ok(
            'state.dir',
            `${dir}: ${existsSync(dir) ? 'writable' : 'will be created'}, persistent (${type ?? 'unknown fs'}), outside any git work tree`
          )
    )
  }
  for (const w of configWarnings(config).filter(x => !x.startsWith('state.dir')))
    checks.push(warn(w.split(' ')[0]!, w, 'move it outside the repository checkout'))
  const keyFile = path.join(dir, 'seal.key')
  if (config.backups.sealKey)
    checks.push(
      ok(
        'seal key',
        'backups.sealKey is set (from the environment): keep its copy in your secret store — every host that restores these backups needs it'
      )
    )
  else if (existsSync(keyFile))
    checks.push(
      ok(
        'seal key',
        `${keyFile} (mode ${(statSync(keyFile).mode & 0o777).toString(8)}): keep a copy in your secret store — without it no backup made here can be restored elsewhere`
      )
    )
  else
    checks.push(
      warn(
        'seal key',
        `no key yet: the first snapshot makes ${keyFile}`,
        'take a snapshot (backout snapshot), then copy the key to your secret store — or set backups.sealKey: ${BACKOUT_SEAL_KEY} (openssl rand -hex 32) on every host'
      )
    )
  return checks
}

async function nginxChecks(config: Config, uid: number): Promise<DoctorCheck[]> {
  const checks: DoctorCheck[] = []
  const test = await runCommand(config.nginx.test, { timeoutMs: 20_000 }).catch((e: unknown) => ({
    code: 127,
    stdout: '',
    stderr: messageOf(e)
  }))
  checks.push(
    test.code === 0
      ? ok('nginx test', `${config.nginx.test.join(' ')}: configuration ok`)
      : fail(
          'nginx test',
          `${config.nginx.test.join(' ')} failed: ${test.stderr.trim().split('\n').pop() ?? ''}`,
          'fix the nginx configuration, or nginx.test if nginx is not on PATH'
        )
  )
  const file = config.nginx.upstreamFile
  checks.push(
    writable(existsSync(file) ? file : path.dirname(file))
      ? ok('nginx upstream file', `${file} is writable`)
      : fail(
          'nginx upstream file',
          `${file} is not writable by this user`,
          `give the runner user write access to ${file}`
        )
  )
  if (uid !== 0 && config.nginx.reload[0] === 'nginx')
    checks.push(
      warn(
        'nginx reload',
        `not root: \`${config.nginx.reload.join(' ')}\` needs to signal the nginx master`,
        'run backout as the user of the nginx master, or set nginx.reload to [sudo, -n, nginx, -s, reload] with a sudoers rule for exactly that command'
      )
    )
  else checks.push(ok('nginx reload', `${config.nginx.reload.join(' ')} (as uid ${uid})`))
  return checks
}

async function postgresChecks(config: Config): Promise<DoctorCheck[]> {
  const db = config.database
  if (db?.kind !== 'postgres') return []
  const checks: DoctorCheck[] = []
  let settings: Record<string, string>
  try {
    const rows = await pgQuery<{ name: string; setting: string }>(
      db.url,
      "SELECT name, setting FROM pg_settings WHERE name IN ('server_version_num', 'archive_mode', 'archive_command', 'wal_level')"
    )
    settings = Object.fromEntries(rows.map(r => [r.name, r.setting]))
  } catch (e) {
    return [
      fail('PostgreSQL', `cannot connect: ${messageOf(e)}`, 'check database.url and that the server runs')
    ]
  }
  const serverMajor = Math.floor(Number(settings.server_version_num) / 10000)
  const binDir = db.binDir ?? findPgBinDir()
  const client = binDir
    ? await version([path.join(binDir, 'pg_dump'), '--version'])
    : await version(['pg_dump', '--version'])
  const clientMajor = Number(/\)\s*(\d+)/.exec(client ?? '')?.[1])
  if (!client)
    checks.push(
      fail(
        'pg_dump',
        'pg_dump not found',
        `install postgresql-client-${serverMajor} (or set database.binDir)`
      )
    )
  else if (clientMajor !== serverMajor)
    checks.push(
      fail(
        'pg_dump version',
        `pg_dump ${clientMajor} (${binDir ?? 'PATH'}) vs server ${serverMajor}: pg_dump/pg_basebackup must match the server's major version`,
        `install postgresql-client-${serverMajor} and set database.binDir: /usr/lib/postgresql/${serverMajor}/bin`
      )
    )
  else
    checks.push(ok('pg_dump version', `client ${clientMajor} = server ${serverMajor} (${binDir ?? 'PATH'})`))
  const archiving = settings.archive_mode !== 'off' && settings.archive_mode !== undefined
  if (!archiving || !db.walArchiveDir)
    checks.push(
      warn(
        'WAL archiving',
        !archiving
          ? `archive_mode is ${settings.archive_mode ?? 'unknown'}: an RPO risk — Level 3 can only restore to the last backup, losing every write since`
          : 'the server archives WAL but database.walArchiveDir is not set: Level 3 cannot replay it',
        'turn on archive_mode with an archive_command into a directory and set database.walArchiveDir to it (point-in-time recovery)'
      )
    )
  else
    checks.push(ok('WAL archiving', `archive_mode ${settings.archive_mode}, archive in ${db.walArchiveDir}`))
  return checks
}

async function toolChecks(config: Config, options: DoctorOptions): Promise<DoctorCheck[]> {
  const checks: DoctorCheck[] = []
  const zstd = await version(['zstd', '--version'])
  checks.push(
    zstd
      ? ok('zstd', zstd)
      : fail('zstd', 'zstd not found: backups are compressed with it', 'apt-get install zstd')
  )
  if (config.runtime === 'compose') {
    const docker = await version(['docker', 'version', '--format', '{{.Server.Version}}'])
    checks.push(
      docker
        ? ok('Docker', `Docker Engine ${docker}`)
        : fail(
            'Docker',
            'cannot reach the Docker Engine',
            'add the runner user to the docker group (or set DOCKER_HOST) and check `docker version`'
          )
    )
    const compose =
      (await version(['docker', 'compose', 'version', '--short'])) ??
      (await version(['docker-compose', 'version', '--short']))
    checks.push(
      compose
        ? ok('compose', `compose ${compose}`)
        : fail(
            'compose',
            'neither docker compose nor docker-compose found',
            'install the docker compose plugin'
          )
    )
  }
  const m = config.database?.migrations
  if (m?.kind === 'alembic') {
    const a = await version([...m.command, '--version'])
    checks.push(
      a
        ? ok('alembic', a)
        : fail(
            'alembic',
            `${m.command.join(' ')} does not run`,
            'install alembic or set database.migrations.command'
          )
    )
  }
  if (options.runnerDir) {
    const node24 = existsSync(path.join(options.runnerDir, 'externals', 'node24'))
    checks.push(
      node24
        ? ok(
            'runner node24',
            `${options.runnerDir}/externals/node24 present: the actions (runs.using: node24) can run`
          )
        : fail(
            'runner node24',
            `${options.runnerDir}/externals has no node24: the runner cannot run backout's actions`,
            'update the self-hosted runner (actions/runner ≥ 2.328) — it updates itself when allowed'
          )
    )
  } else
    checks.push(
      ok(
        'runner node24',
        `this host runs Node ${process.versions.node}; pass --runner-dir DIR to check the runner's own node24`
      )
    )
  return checks
}

async function backupChecks(service: Service, options: DoctorOptions): Promise<DoctorCheck[]> {
  const config = service.config
  const checks: DoctorCheck[] = []
  const dir = existingAncestor(config.backups.dir)
  try {
    const s = statfsSync(dir)
    const freeMB = (s.bavail * s.bsize) / 1024 / 1024
    const newest = service.store.list()[0]
    const need = Math.max(config.assess.minFreeDiskMB, ((newest?.sizeBytes ?? 0) * 2) / 1024 / 1024)
    checks.push(
      freeMB >= need
        ? ok('disk under backups', `${Math.round(freeMB)} MB free under ${dir}`)
        : fail(
            'disk under backups',
            `${Math.round(freeMB)} MB free under ${dir}, less than ${Math.round(need)} MB`,
            'free space or lower backups.keep / keepDays'
          )
    )
  } catch (e) {
    checks.push(fail('disk under backups', messageOf(e), `create ${config.backups.dir}`))
  }
  const backups = service.store.list()
  const newest = backups[0]
  if (!newest)
    checks.push(
      warn(
        'newest backup',
        `no backup in ${config.backups.dir} yet`,
        'take one now (backout snapshot) and before every deployment (record-release)'
      )
    )
  else {
    const hours = (Date.now() - Date.parse(newest.manifest.createdAt)) / 3_600_000
    const age = hours < 1 ? `${Math.round(hours * 60)} min` : `${hours.toFixed(1)} h`
    const line = `${newest.id} (${newest.manifest.kind}), ${age} old`
    checks.push(
      hours > 24
        ? warn('newest backup', line, 'take backups at least daily and before every deployment')
        : ok('newest backup', line)
    )
    if (options.drill) {
      const report = await verifyBackup(service, newest.id, { quick: false })
      checks.push(
        report.ok
          ? ok('restore drill', `${newest.id} restored into scratch in ${report.durationMs} ms`)
          : fail(
              'restore drill',
              `${newest.id}: ${report.problems.join('; ')}`,
              'take a new backup and find out why this one does not restore'
            )
      )
    } else
      checks.push(
        warn(
          'restore drill',
          'not run',
          `backout doctor --drill (or backout verify ${newest.id}) restores the newest backup into scratch`
        )
      )
  }
  return checks
}

export async function doctor(service: Service, options: DoctorOptions = {}): Promise<DoctorCheck[]> {
  const config = service.config
  const uid = options.uid ?? process.getuid?.() ?? 0
  return [
    ok('config', `valid: ${config.service} (${config.environment}), runtime ${config.runtime}`),
    ...stateChecks(config),
    ...(await nginxChecks(config, uid)),
    ...(await postgresChecks(config)),
    ...(await toolChecks(config, options)),
    ...(await backupChecks(service, options))
  ]
}

export function doctorText(checks: readonly DoctorCheck[]): string {
  const mark = { ok: '✓', warn: '!', fail: '✗' }
  const width = Math.max(...checks.map(c => c.name.length))
  const lines = checks.map(
    c =>
      `${mark[c.status]} ${c.name.padEnd(width)}  ${c.detail}${c.fix ? `\n  ${' '.repeat(width)}  → ${c.fix}` : ''}`
  )
  const failed = checks.filter(c => c.status === 'fail').length
  const warned = checks.filter(c => c.status === 'warn').length
  return [
    ...lines,
    `doctor: ${failed} failed, ${warned} warnings, ${checks.length - failed - warned} ok`
  ].join('\n')
}
