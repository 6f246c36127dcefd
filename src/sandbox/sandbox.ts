import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { stringify as toYaml } from 'yaml'
import { UserError } from '../core/errors'
import type { Logger } from '../core/logger'
import { runCommand } from '../drivers/exec'
import { loadConfig } from '../drivers/config-file'
import { freePort } from '../drivers/net'
import { createNginx } from '../drivers/nginx'
import {
  findPgBinDir,
  initCluster,
  psql,
  startCluster,
  stopCluster,
  describeCluster
} from '../drivers/postgres-cluster'
import { prepareWalArchive, walArchiveSettings } from '../drivers/postgres-backup'
import { readPid, runningPid, startDetached, stopByPidFile, stopPid } from '../drivers/process'
import { sqliteExec } from '../drivers/sqlite-cli'
import { createService } from '../engine/service'
import { takeSnapshot } from '../engine/snapshot'
import { confirmServedBy } from '../engine/level1'
import {
  MIGRATION_105_DOWN,
  MIGRATION_105_UP,
  SCHEMA_PG,
  SCHEMA_SQLITE,
  sandboxNginxArgs,
  startSandboxNginx,
  waitForHttp
} from './scenario'
import { composeSandboxDown, composeSandboxUp, readComposeSandboxState } from './compose-sandbox'

/**
 * The sandbox: a real environment to try backout on, under one directory and on loopback only — the app
 * in two versions (blue v2.4.9 stable, green v2.5.0 failing a share of requests and slow), real nginx in
 * front, a real PostgreSQL cluster (SQLite where PostgreSQL is not installed) holding the app's tables, and
 * DIR/backout.yml describing it all. `up` leaves it as on-call finds it: green deployed and live.
 */
export interface SandboxOptions {
  dir: string
  /** The CLI's `sandbox` command: `<sandboxCommand> app --port N ...` runs the app, `... smoke` its smoke tests. */
  appCommand: readonly string[]
  db?: 'postgres' | 'sqlite'
  /** Which target is live when up returns: green (the bad deployment happened) or blue. */
  live?: 'blue' | 'green'
  /** PostgreSQL only: archive WAL into DIR/pg/wal-archive (database.walArchiveDir), for point-in-time recovery. */
  walArchive?: boolean
  /** How the app runs: two processes (default) or two compose projects on the Docker Engine DOCKER_HOST names. */
  runtime?: 'process' | 'compose'
  log: Logger
}

export interface SandboxState {
  dir: string
  config: string
  db: 'postgres' | 'sqlite'
  nginxPort: number
  ports: { blue: number; green: number; postgres?: number }
  pgDataDir?: string
  pgBinDir?: string
}

const VERSIONS = { blue: 'v2.4.9', green: 'v2.5.0' } as const
const BEHAVIOUR = { blue: { errorRate: 0, delayMs: 5 }, green: { errorRate: 0.3, delayMs: 600 } } as const

const STATE_FILE = 'sandbox.json'

export function readSandboxState(dir: string): SandboxState | undefined {
  const file = path.join(dir, STATE_FILE)
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as SandboxState) : undefined
}

export async function sandboxUp(options: SandboxOptions): Promise<SandboxState> {
  if (options.runtime === 'compose') return composeSandboxUp(options)
  const dir = path.resolve(options.dir)
  const log = options.log
  const existing = readSandboxState(dir)
  if (existing && runningPid(path.join(dir, 'run', 'nginx.pid')) !== undefined)
    throw new UserError(
      `a sandbox already runs in ${dir} — stop it first: backout sandbox down --dir ${dir}`,
      'sandbox_running'
    )
  const pgBin = findPgBinDir()
  const db = options.db ?? (pgBin ? 'postgres' : 'sqlite')
  if (db === 'postgres' && !pgBin)
    throw new UserError(
      '--db postgres: PostgreSQL is not installed — install postgresql-15 or use --db sqlite'
    )
  for (const sub of [
    'nginx/tmp',
    'run',
    'logs',
    'data/godot',
    'config',
    'backups',
    'state',
    'migrations/rollback'
  ])
    mkdirSync(path.join(dir, sub), { recursive: true })
  chmodSync(dir, 0o755)

  const [nginxPort, bluePort, greenPort] = [await freePort(), await freePort(), await freePort()]
  const state: SandboxState = {
    dir,
    config: path.join(dir, 'backout.yml'),
    db,
    nginxPort,
    ports: { blue: bluePort, green: greenPort }
  }

  // Data the service owns: a data directory and config files.
  writeFileSync(path.join(dir, 'data/godot/world.json'), JSON.stringify({ regions: 12, seed: 42 }) + '\n')
  writeFileSync(path.join(dir, 'config/.env'), `IMAGE_TAG=${VERSIONS.blue}\nLOG_LEVEL=info\n`)
  writeFileSync(
    path.join(dir, 'config/app.json'),
    JSON.stringify({ featureFlags: { newLobby: false } }, null, 2) + '\n'
  )
  writeFileSync(path.join(dir, 'migrations/105_add_user_preferences_up.sql'), MIGRATION_105_UP)
  writeFileSync(path.join(dir, 'migrations/rollback/105_add_user_preferences_down.sql'), MIGRATION_105_DOWN)

  // The database.
  let database: Record<string, unknown>
  if (db === 'postgres') {
    const pgPort = await freePort()
    state.ports.postgres = pgPort
    state.pgDataDir = path.join(dir, 'pg', 'data')
    state.pgBinDir = pgBin
    mkdirSync(path.join(dir, 'pg'), { recursive: true, mode: 0o755 })
    chmodSync(path.join(dir, 'pg'), 0o755)
    const archive = path.join(dir, 'pg', 'wal-archive')
    if (options.walArchive) prepareWalArchive(archive)
    await log.group('PostgreSQL', async () => {
      const settings = options.walArchive ? walArchiveSettings(archive) : undefined
      const cluster = await initCluster({ dataDir: state.pgDataDir!, port: pgPort, settings })
      await startCluster(cluster, path.join(dir, 'pg', 'postgres.log'))
      await psql(cluster, 'postgres', 'CREATE DATABASE app;')
      await psql(cluster, 'app', SCHEMA_PG)
      log.info(
        `PostgreSQL ${path.basename(path.dirname(pgBin!))} on 127.0.0.1:${pgPort}, database app seeded`
      )
    })
    database = {
      kind: 'postgres',
      url: `postgresql://postgres@127.0.0.1:${pgPort}/app`,
      dataDir: 'pg/data',
      ...(options.walArchive ? { walArchiveDir: 'pg/wal-archive' } : {}),
      criticalTables: ['users', 'sessions', 'game_state'],
      migrations: { kind: 'sql', dir: 'migrations' }
    }
  } else {
    await sqliteExec(path.join(dir, 'data', 'app.db'), SCHEMA_SQLITE)
    log.info('SQLite database data/app.db seeded (PostgreSQL is not installed)')
    database = {
      kind: 'sqlite',
      path: 'data/app.db',
      criticalTables: ['users', 'sessions', 'game_state'],
      migrations: { kind: 'sql', dir: 'migrations' }
    }
  }

  // The two versions of the app.
  const target = (color: 'blue' | 'green', port: number): Record<string, unknown> => ({
    version: VERSIONS[color],
    upstream: `127.0.0.1:${port}`,
    process: {
      command: [
        ...options.appCommand,
        'app',
        '--port',
        String(port),
        '--environment',
        color,
        '--version',
        VERSIONS[color],
        '--error-rate',
        String(BEHAVIOUR[color].errorRate),
        '--delay-ms',
        String(BEHAVIOUR[color].delayMs)
      ],
      pidFile: `run/${color}.pid`,
      logFile: `logs/${color}.log`
    }
  })
  const nginxArgs = sandboxNginxArgs(dir)
  const config = {
    service: 'spacetime',
    environment: 'sandbox',
    runtime: 'process',
    targets: { blue: target('blue', bluePort), green: target('green', greenPort) },
    nginx: {
      upstreamFile: 'nginx/upstream.conf',
      upstreamName: 'backend',
      url: `http://127.0.0.1:${nginxPort}`,
      test: ['nginx', '-t', '-q', ...nginxArgs],
      reload: ['nginx', ...nginxArgs, '-s', 'reload']
    },
    health: { confirmRequests: 20, waitSeconds: 60, intervalSeconds: 1 },
    stop: { timeoutSeconds: 10 },
    database,
    configFiles: ['config/.env', 'config/app.json', 'nginx/nginx.conf'],
    data: [{ name: 'godot-data', path: 'data/godot' }],
    corruptionMarker: 'data/godot/corruption_detected',
    smokeTest: [...options.appCommand, 'smoke', '--url', `http://127.0.0.1:${nginxPort}`],
    // Thorough validation monitors briefly here: a sandbox shows the check, it need not watch for 2 min.
    validate: { durationSeconds: 6, intervalSeconds: 2 },
    backups: { dir: 'backups', keep: 10, keepDays: 7 },
    state: { dir: 'state' },
    history: { log: 'rollback_history.log' }
  }
  writeFileSync(
    state.config,
    `# backout config for the sandbox in ${dir} (docs/config.md documents every key)\n` + toYaml(config)
  )
  writeFileSync(path.join(dir, STATE_FILE), JSON.stringify(state, null, 2) + '\n')
  const cfg = loadConfig(state.config)

  await log.group('Applications', async () => {
    for (const color of ['blue', 'green'] as const) {
      const p = cfg.targets[color].process!
      startDetached({ command: p.command, cwd: p.cwd, env: p.env, pidFile: p.pidFile, logFile: p.logFile! })
      await waitForHttp(`http://127.0.0.1:${state.ports[color]}/health`, 20)
      log.info(`${color} ${VERSIONS[color]} on 127.0.0.1:${state.ports[color]}`)
    }
  })

  await startSandboxNginx(dir, cfg, nginxPort, log)

  if ((options.live ?? 'green') === 'green') {
    const service = createService(cfg, log)
    const backup = await takeSnapshot(service, { safety: false })
    log.info(`release record of blue ${VERSIONS.blue} before the deployment: backup ${backup.id}`)
    await deployGreen(cfg.nginx, state)
    await confirmServedBy(service, 'green', cfg.health.confirmRequests, AbortSignal.timeout(30_000))
    log.info(`deployed green ${VERSIONS.green}: migration 105 applied, nginx → green`)
  }
  return state
}

/** The bad deployment: migration 105 and the switch to green. */
async function deployGreen(
  nginxSettings: Parameters<typeof createNginx>[0],
  state: SandboxState
): Promise<void> {
  if (state.db === 'postgres') {
    const cluster = describeCluster(
      { dataDir: state.pgDataDir!, port: state.ports.postgres! },
      state.pgBinDir
    )
    await psql(cluster, 'app', MIGRATION_105_UP)
  } else {
    await sqliteExec(path.join(state.dir, 'data', 'app.db'), MIGRATION_105_UP)
  }
  writeFileSync(path.join(state.dir, 'config/.env'), `IMAGE_TAG=${VERSIONS.green}\nLOG_LEVEL=info\n`)
  await createNginx(nginxSettings).switchUpstream(
    `127.0.0.1:${state.ports.green}`,
    `active=green version=${VERSIONS.green} (sandbox deployment)`
  )
}

/** Stops everything the sandbox started, by PID. Safe to run twice. */
export async function sandboxDown(dirArg: string, log: Logger): Promise<void> {
  const dir = path.resolve(dirArg)
  if (readComposeSandboxState(dir)) return composeSandboxDown(dir, log)
  const state = readSandboxState(dir)
  if (!state) throw new UserError(`no sandbox in ${dir} (no ${STATE_FILE}) — nothing to stop`, 'no_sandbox')
  const nginxPid = readPid(path.join(dir, 'run', 'nginx.pid'))
  if (nginxPid !== undefined) log.info(`nginx: ${await stopPid(nginxPid, 10_000)}`)
  for (const color of ['blue', 'green'] as const) {
    const outcome = await stopByPidFile(path.join(dir, 'run', `${color}.pid`), 10_000)
    log.info(`${color}: ${outcome}`)
  }
  if (state.pgDataDir && state.pgBinDir) {
    await stopCluster({ dataDir: state.pgDataDir, binDir: state.pgBinDir })
    log.info('PostgreSQL: stopped')
  }
  rmSync(path.join(dir, STATE_FILE), { force: true })
}

/** Runs nginx -t on a sandbox: used by tests to be sure the config stayed valid. */
export async function sandboxNginxTest(dir: string): Promise<boolean> {
  const res = await runCommand([
    'nginx',
    '-t',
    '-q',
    '-p',
    path.join(dir, 'nginx'),
    '-c',
    path.join(dir, 'nginx', 'nginx.conf')
  ])
  return res.code === 0
}
