import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { stringify as toYaml } from 'yaml'
import type { Color, Config } from '../core/config'
import { UserError, messageOf } from '../core/errors'
import type { Logger } from '../core/logger'
import { createComposeRuntime, dockerEndpoint, dockerFor, type ComposeRuntime } from '../drivers/compose'
import { loadConfig } from '../drivers/config-file'
import { freePort } from '../drivers/net'
import { createNginx } from '../drivers/nginx'
import {
  describeCluster,
  findPgBinDir,
  initCluster,
  psql,
  startCluster,
  stopCluster
} from '../drivers/postgres-cluster'
import { prepareWalArchive, walArchiveSettings } from '../drivers/postgres-backup'
import { readPid, runningPid, stopPid } from '../drivers/process'
import { confirmServedBy } from '../engine/level1'
import { createService, type Service } from '../engine/service'
import { takeSnapshot } from '../engine/snapshot'
import {
  MIGRATION_105_DOWN,
  MIGRATION_105_UP,
  SCHEMA_PG,
  sandboxNginxArgs,
  startSandboxNginx,
  waitForHttp
} from './scenario'
import { APP_VERSIONS, buildAppImages, type AppImage } from './app-images'
import type { SandboxOptions, SandboxState } from './sandbox'

/**
 * The sandbox on the `compose` runtime: the same scenario as the process sandbox — blue v2.4.9 live, a release
 * snapshot, then the green v2.5.0 deployment with migration 105 — but the app runs as two Docker Compose
 * projects, spacetime-blue and spacetime-green (the runbook's), from images built locally (app-images.ts), on
 * the Docker Engine DOCKER_HOST names. nginx and PostgreSQL run on the host, on loopback, as in the process
 * sandbox. Each project lives in DIR/compose/<colour>/ with its docker-compose.yml (`image:
 * spacetime:${IMAGE_TAG}`, a healthcheck) and its .env (IMAGE_TAG); green's slot holds the previous release
 * until the deployment writes IMAGE_TAG=v2.5.0 and starts it.
 */

export interface ComposeSandboxOptions extends Omit<SandboxOptions, 'appCommand'> {
  /** The CLI's `sandbox` command, for the smoke test (`<command> smoke --url …`); optional here. */
  appCommand?: readonly string[]
  /** The environment compose and the Docker API use: DOCKER_HOST picks the engine. Default: process.env. */
  env?: NodeJS.ProcessEnv
}

export interface ComposeSandboxState extends SandboxState {
  runtime: 'compose'
  /** The engine the projects run on (DOCKER_HOST), or undefined for the default socket. */
  dockerHost?: string
  projects: Record<Color, string>
  images: Record<Color, AppImage>
}

const STATE_FILE = 'sandbox.json'
const PROJECTS = { blue: 'spacetime-blue', green: 'spacetime-green' } as const
const SERVICE = 'app'

const APP_CONFIG = { featureFlags: { newLobby: false } }
/** What the v2.5.0 deployment changes in config/app.json (the runbook's "config version 2024-12-02"). */
const APP_CONFIG_V250 = { featureFlags: { newLobby: true } }

const envFile = (tag: string): string => `IMAGE_TAG=${tag}\nLOG_LEVEL=info\n`

/** One project's compose file: the runbook's shape, the image by ${IMAGE_TAG}, a healthcheck on /status. */
function composeFile(color: Color, port: number): string {
  const doc = {
    version: '2.4',
    services: {
      [SERVICE]: {
        image: 'spacetime:${IMAGE_TAG}',
        init: true,
        environment: { LOG_LEVEL: '${LOG_LEVEL}' },
        ports: [`127.0.0.1:${port}:80`],
        healthcheck: {
          test: ['CMD', '/bin/busybox', 'wget', '-q', '-O', '/dev/null', 'http://127.0.0.1/status'],
          interval: '1s',
          timeout: '2s',
          retries: 3
        }
      }
    }
  }
  return `# ${PROJECTS[color]}: the SpaceTime app, ${color} slot (backout sandbox, runtime: compose)\n${toYaml(doc)}`
}

const DOCKER_REMEDY =
  'start one (systemctl start docker, or dockerd &), or point DOCKER_HOST at a running one ' +
  '(export DOCKER_HOST=unix:///path/to/docker.sock), then run `backout sandbox up --runtime compose` again'

/** Refuses, before anything is written, when no Docker Engine answers at the DOCKER_HOST in env. */
async function requireDocker(env: NodeJS.ProcessEnv): Promise<string> {
  const docker = dockerFor(env)
  const endpoint = dockerEndpoint(docker) ?? 'the default socket (/var/run/docker.sock)'
  try {
    const version = await docker.version()
    return `Docker Engine ${version.Version} at ${endpoint}`
  } catch (e) {
    throw new UserError(
      `sandbox --runtime compose needs a running Docker Engine, and none answers at ${endpoint} (${messageOf(e)}) — ${DOCKER_REMEDY}`,
      'docker_not_running'
    )
  }
}

export function readComposeSandboxState(dir: string): ComposeSandboxState | undefined {
  const file = path.join(dir, STATE_FILE)
  if (!existsSync(file)) return undefined
  const state = JSON.parse(readFileSync(file, 'utf8')) as Partial<ComposeSandboxState>
  return state.runtime === 'compose' ? (state as ComposeSandboxState) : undefined
}

/** The service the sandbox's backout.yml describes, with the compose runtime on the sandbox's engine. */
function serviceFor(cfg: Config, log: Logger, env: NodeJS.ProcessEnv): Service & { runtime: ComposeRuntime } {
  return { ...createService(cfg, log), runtime: createComposeRuntime(cfg, { env }) }
}

export async function composeSandboxUp(options: ComposeSandboxOptions): Promise<ComposeSandboxState> {
  const dir = path.resolve(options.dir)
  const log = options.log
  const env = options.env ?? process.env
  if (readComposeSandboxState(dir) && runningPid(path.join(dir, 'run', 'nginx.pid')) !== undefined)
    throw new UserError(
      `a sandbox already runs in ${dir} — stop it first: backout sandbox down --dir ${dir}`,
      'sandbox_running'
    )
  if (options.db === 'sqlite')
    throw new UserError(
      'sandbox --runtime compose runs PostgreSQL only — drop --db sqlite, or use --runtime process for SQLite',
      'bad_argument'
    )
  const engine = await requireDocker(env)
  const pgBin = findPgBinDir()
  if (!pgBin)
    throw new UserError(
      'sandbox --runtime compose: PostgreSQL is not installed — install postgresql-15 (apt-get install postgresql-15)',
      'postgres_missing'
    )
  for (const sub of [
    'nginx/tmp',
    'run',
    'logs',
    'data/godot',
    'config',
    'backups',
    'state',
    'migrations/rollback',
    'compose/blue',
    'compose/green'
  ])
    mkdirSync(path.join(dir, sub), { recursive: true })
  chmodSync(dir, 0o755)

  const [nginxPort, bluePort, greenPort, pgPort] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort()
  ]
  const ports = { blue: bluePort, green: greenPort }
  const docker = dockerFor(env)
  const partial: Omit<ComposeSandboxState, 'images'> = {
    dir,
    config: path.join(dir, 'backout.yml'),
    db: 'postgres',
    nginxPort,
    ports: { ...ports, postgres: pgPort },
    pgDataDir: path.join(dir, 'pg', 'data'),
    pgBinDir: pgBin,
    runtime: 'compose',
    dockerHost: dockerEndpoint(docker),
    projects: { ...PROJECTS }
  }

  // Written first, so that `sandbox down` cleans up after an `up` that failed halfway.
  writeFileSync(path.join(dir, STATE_FILE), JSON.stringify(partial, null, 2) + '\n')

  const images = await log.group('Images', async () => {
    const began = Date.now()
    const built = await buildAppImages(docker, { workDir: path.join(dir, 'run') })
    log.info(
      `${engine}: built ${built.blue.tag} (${built.blue.id.slice(0, 19)}) and ${built.green.tag} ` +
        `(${built.green.id.slice(0, 19)}) in ${((Date.now() - began) / 1000).toFixed(1)}s`
    )
    return built
  })
  const state: ComposeSandboxState = { ...partial, images }

  // Data the service owns, its config files and the two compose projects (green's slot holds the previous release).
  writeFileSync(path.join(dir, 'data/godot/world.json'), JSON.stringify({ regions: 12, seed: 42 }) + '\n')
  writeFileSync(path.join(dir, 'config/app.json'), JSON.stringify(APP_CONFIG, null, 2) + '\n')
  writeFileSync(path.join(dir, 'migrations/105_add_user_preferences_up.sql'), MIGRATION_105_UP)
  writeFileSync(path.join(dir, 'migrations/rollback/105_add_user_preferences_down.sql'), MIGRATION_105_DOWN)
  for (const color of ['blue', 'green'] as const) {
    writeFileSync(path.join(dir, 'compose', color, 'docker-compose.yml'), composeFile(color, ports[color]))
    writeFileSync(path.join(dir, 'compose', color, '.env'), envFile(APP_VERSIONS.blue))
  }

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
    log.info(`PostgreSQL ${path.basename(path.dirname(pgBin))} on 127.0.0.1:${pgPort}, database app seeded`)
  })

  const target = (color: Color): Record<string, unknown> => ({
    version: APP_VERSIONS[color],
    upstream: `127.0.0.1:${ports[color]}`,
    compose: { project: PROJECTS[color], file: `compose/${color}/docker-compose.yml`, service: SERVICE }
  })
  const nginxArgs = sandboxNginxArgs(dir)
  const config = {
    service: 'spacetime',
    environment: 'sandbox',
    runtime: 'compose',
    targets: { blue: target('blue'), green: target('green') },
    nginx: {
      upstreamFile: 'nginx/upstream.conf',
      upstreamName: 'backend',
      url: `http://127.0.0.1:${nginxPort}`,
      test: ['nginx', '-t', '-q', ...nginxArgs],
      reload: ['nginx', ...nginxArgs, '-s', 'reload']
    },
    health: { confirmRequests: 20, waitSeconds: 60, intervalSeconds: 1 },
    stop: { timeoutSeconds: 10 },
    database: {
      kind: 'postgres',
      url: `postgresql://postgres@127.0.0.1:${pgPort}/app`,
      dataDir: 'pg/data',
      ...(options.walArchive ? { walArchiveDir: 'pg/wal-archive' } : {}),
      criticalTables: ['users', 'sessions', 'game_state'],
      migrations: { kind: 'sql', dir: 'migrations' }
    },
    configFiles: [
      'compose/blue/docker-compose.yml',
      'compose/blue/.env',
      'compose/green/docker-compose.yml',
      'compose/green/.env',
      'config/app.json',
      'nginx/nginx.conf'
    ],
    data: [{ name: 'godot-data', path: 'data/godot' }],
    corruptionMarker: 'data/godot/corruption_detected',
    ...(options.appCommand
      ? { smokeTest: [...options.appCommand, 'smoke', '--url', `http://127.0.0.1:${nginxPort}`] }
      : {}),
    validate: { durationSeconds: 6, intervalSeconds: 2 },
    backups: { dir: 'backups', keep: 10, keepDays: 7 },
    state: { dir: 'state' },
    history: { log: 'rollback_history.log' }
  }
  writeFileSync(
    state.config,
    `# backout config for the compose sandbox in ${dir} (docs/config.md documents every key)\n` +
      `# The projects run on ${state.dockerHost ?? 'the default Docker socket'}: export DOCKER_HOST=${state.dockerHost ?? ''} before running backout.\n` +
      toYaml(config)
  )
  writeFileSync(path.join(dir, STATE_FILE), JSON.stringify(state, null, 2) + '\n')
  const cfg = loadConfig(state.config)
  const service = serviceFor(cfg, log, env)

  await log.group('Applications', async () => {
    const began = Date.now()
    const up = await service.runtime.start('blue')
    const healthy = await service.runtime.waitHealthy('blue', undefined, {
      intervalMs: 250,
      timeoutMs: 60_000
    })
    await waitForHttp(`http://127.0.0.1:${ports.blue}/health`, 20)
    log.info(
      `blue ${APP_VERSIONS.blue} (project ${PROJECTS.blue}) on 127.0.0.1:${ports.blue}: ${up}; ${healthy} ` +
        `(${((Date.now() - began) / 1000).toFixed(1)}s)`
    )
  })

  await startSandboxNginx(dir, cfg, nginxPort, log)

  if ((options.live ?? 'green') === 'green') {
    const backup = await takeSnapshot(service, { safety: false })
    log.info(`release record of blue ${APP_VERSIONS.blue} before the deployment: backup ${backup.id}`)
    await log.group('Deployment of green', async () => {
      const began = Date.now()
      // The bad deployment: green's slot gets v2.5.0 and the new app config, migration 105, traffic to green.
      writeFileSync(path.join(dir, 'compose/green/.env'), envFile(APP_VERSIONS.green))
      writeFileSync(path.join(dir, 'config/app.json'), JSON.stringify(APP_CONFIG_V250, null, 2) + '\n')
      const up = await service.runtime.start('green')
      await service.runtime.waitHealthy('green', undefined, { intervalMs: 250, timeoutMs: 60_000 })
      await psql(describeCluster({ dataDir: state.pgDataDir!, port: pgPort }, pgBin), 'app', MIGRATION_105_UP)
      await createNginx(cfg.nginx).switchUpstream(
        cfg.targets.green.upstream,
        `active=green version=${APP_VERSIONS.green} (sandbox deployment)`
      )
      await confirmServedBy(service, 'green', cfg.health.confirmRequests, AbortSignal.timeout(30_000))
      log.info(
        `deployed green ${APP_VERSIONS.green} (project ${PROJECTS.green}: ${up}): migration 105 applied, ` +
          `nginx → green (${((Date.now() - began) / 1000).toFixed(1)}s)`
      )
    })
  }
  return state
}

/**
 * Stops what a compose sandbox started: nginx (by PID), both compose projects (compose down, which removes their
 * containers and networks; the images stay), PostgreSQL. Safe to run twice.
 */
export async function composeSandboxDown(
  dirArg: string,
  log: Logger,
  env?: NodeJS.ProcessEnv
): Promise<void> {
  const dir = path.resolve(dirArg)
  const state = readComposeSandboxState(dir)
  if (!state)
    throw new UserError(`no compose sandbox in ${dir} (no ${STATE_FILE}) — nothing to stop`, 'no_sandbox')
  const nginxPid = readPid(path.join(dir, 'run', 'nginx.pid'))
  if (nginxPid !== undefined) log.info(`nginx: ${await stopPid(nginxPid, 10_000)}`)
  const base = env ?? process.env
  const dockerEnv = state.dockerHost && !base.DOCKER_HOST ? { ...base, DOCKER_HOST: state.dockerHost } : base
  try {
    if (!existsSync(state.config)) throw new Error(`${state.config} was never written`)
    const runtime = createComposeRuntime(loadConfig(state.config), { env: dockerEnv })
    for (const color of ['blue', 'green'] as const) {
      log.info(`${PROJECTS[color]}: ${await runtime.stop(color, 10_000)}`)
    }
  } catch (e) {
    log.warn(
      `compose projects not stopped: ${messageOf(e)} — stop them with docker-compose -p <project> down`
    )
  }
  if (state.pgDataDir && state.pgBinDir) {
    await stopCluster({ dataDir: state.pgDataDir, binDir: state.pgBinDir })
    log.info('PostgreSQL: stopped')
  }
  rmSync(path.join(dir, STATE_FILE), { force: true })
}
