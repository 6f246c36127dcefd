import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import type Dockerode from 'dockerode'
import { parse, stringify } from 'yaml'
import type { Color, Config } from '../core/config'
import { OperationError, UserError, messageOf } from '../core/errors'
import { runCommand, type CommandResult } from './exec'
import type { Runtime } from './runtime'
import { sleep } from './sleep'

/**
 * The `compose` runtime: each colour is a Docker Compose project (the runbook's spacetime-blue and
 * spacetime-green). Compose itself starts and stops the project (`up -d`, `down --timeout N`); Docker's API
 * (dockerode) reads the state, finding containers by the compose labels — container names differ between
 * Compose v1 (`proj_svc_1`) and v2 (`proj-svc-1`), labels do not.
 */

const PROJECT_LABEL = 'com.docker.compose.project'
const SERVICE_LABEL = 'com.docker.compose.service'
const ONEOFF_LABEL = 'com.docker.compose.oneoff'

const COMPOSE_REMEDY =
  'install the compose plugin (apt-get install docker-compose-plugin, then `docker compose version`) or ' +
  'docker-compose (download https://github.com/docker/compose/releases/download/v2.20.0/docker-compose-$(uname -s)-$(uname -m) ' +
  'to /usr/local/bin/docker-compose, chmod +x, then `docker-compose --version`)'

/**
 * The compose command line: `docker compose` (v2, the plugin) when it answers, else `docker-compose` (v1 or
 * the standalone v2). Neither → a UserError with the runbook's remedy.
 */
export async function detectCompose(env: NodeJS.ProcessEnv = process.env): Promise<string[]> {
  const candidates = [['docker', 'compose'], ['docker-compose']]
  for (const prefix of candidates) {
    try {
      const result = await runCommand([...prefix, 'version'], { env, timeoutMs: 15000 })
      if (result.code === 0) return prefix
    } catch {
      // not installed: try the next one
    }
  }
  throw new UserError(
    `Docker Compose not found: neither \`docker compose\` nor \`docker-compose\` runs — ${COMPOSE_REMEDY}`,
    'compose_not_found'
  )
}

/** The project name as Compose records it in its labels: lower case, letters, digits, - and _ only. */
export function normalizeProject(name: string): string {
  return name.toLowerCase().replace(/[^-_a-z0-9]/g, '')
}

/** One image a project's service runs, for images.txt. */
export interface ComposeImage {
  service: string
  /** The reference in the compose file, after interpolation, e.g. spacetime:v2.5.0. */
  image: string
  /** The image ID (sha256:…), the same on every host that has this exact image. */
  id: string
  tags: string[]
  /** Registry digests (repo@sha256:…); empty for an image built locally and never pushed. */
  digests: string[]
  /** The most exact reference to pin: the first registry digest, else the image ID. */
  pin: string
}

/** One container of a project, for containers.json. */
export interface ComposeContainer {
  id: string
  name: string
  project: string
  service: string
  state: string
  status: string
  /** Docker's healthcheck status (starting, healthy, unhealthy), or none without a healthcheck. */
  health: string
  exitCode: number
  startedAt: string
  image: string
  imageId: string
  ports: string[]
}

export interface ComposeRuntimeOptions {
  /** The Docker API client; by default one for `env.DOCKER_HOST` (or the default socket). */
  docker?: Dockerode
  /** The compose command line, e.g. ['docker', 'compose']; by default detected on first use. */
  compose?: readonly string[]
  /** The environment compose runs in; DOCKER_HOST is set to the dockerode client's socket. */
  env?: NodeJS.ProcessEnv
}

export interface WaitOptions {
  /** Default: health.intervalSeconds. */
  intervalMs?: number
  /** Default: health.waitSeconds. */
  timeoutMs?: number
}

export interface ComposeRuntime extends Runtime {
  /** The compose command line in use (detected on first use when not given). */
  composeCommand(): Promise<string[]>
  /** The images the project's services run (or would run, when it is stopped). */
  images(color: Color): Promise<ComposeImage[]>
  /**
   * Pins the application service to an image so that the next `up -d` runs exactly it: a digest
   * (repo@sha256:…), an image ID (sha256:…), a reference (repo:tag) or a bare tag (v2.4.9, in the
   * compose file's repository). A tag is pinned by the image ID it names now. Writes an override file in
   * state.dir; returns what was pinned.
   */
  pinImage(color: Color, digestOrTag: string): Promise<string>
  /** Removes the pin: the compose file alone decides again. */
  unpin(color: Color): string
  /** The override file a pin writes (it exists only while pinned). */
  pinFile(color: Color): string
  containersJson(color: Color): Promise<ComposeContainer[]>
  /** Resolves when every container of the service runs and is healthy (or has no healthcheck). */
  waitHealthy(color: Color, signal?: AbortSignal, options?: WaitOptions): Promise<string>
}

/**
 * dockerode (with docker-modem, ssh2, @grpc/grpc-js and protobufjs: ~1 MB minified) is loaded on first use,
 * synchronously. The build (scripts/build.mjs) bundles it apart, into dist/<name>/dockerode/index.js, and maps
 * this require to that file: a run that never talks to Docker never reads, compiles or evaluates it.
 */
function loadDockerode(): typeof Dockerode {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('dockerode') as typeof Dockerode
}

/** A Docker client for the DOCKER_HOST in env (unix://, tcp://), else docker-modem's defaults. */
export function dockerFor(env: NodeJS.ProcessEnv = process.env): Dockerode {
  const Dockerode = loadDockerode()
  const host = env.DOCKER_HOST
  if (host?.startsWith('unix://')) return new Dockerode({ socketPath: host.slice('unix://'.length) })
  if (host?.startsWith('tcp://')) {
    const url = new URL(host)
    return new Dockerode({ host: url.hostname, port: Number(url.port || 2375) })
  }
  return new Dockerode()
}

/**
 * Where a client connects, as DOCKER_HOST would say it; undefined when docker-modem picks its default socket
 * itself (then compose, given no DOCKER_HOST, looks in the same default place).
 */
export function dockerEndpoint(docker: Dockerode): string | undefined {
  const modem = docker.modem as { socketPath?: unknown; host?: unknown; port?: unknown }
  if (typeof modem.socketPath === 'string') return `unix://${modem.socketPath}`
  if (typeof modem.host === 'string') {
    const port = typeof modem.port === 'number' || typeof modem.port === 'string' ? modem.port : 2375
    return `tcp://${modem.host}:${port}`
  }
  return undefined
}

/** Turns "cannot connect" into the runbook's remedy; other errors pass through. */
function dockerError(e: unknown, endpoint: string): unknown {
  const code = (e as NodeJS.ErrnoException | undefined)?.code
  if (code === 'ECONNREFUSED' || code === 'ENOENT')
    return new UserError(
      `Docker is not running — start it (systemctl start docker / dockerd): nothing answers at ${endpoint} ` +
        `(${code}); set DOCKER_HOST if the daemon listens elsewhere`,
      'docker_not_running'
    )
  if (code === 'EACCES')
    return new UserError(
      `Docker at ${endpoint}: permission denied — run as a user in the docker group (usermod -aG docker $USER) or as root`,
      'docker_permission'
    )
  return e
}

const tail = (r: CommandResult): string => (r.stderr || r.stdout).trim().split('\n').slice(-6).join('\n')

/** Hints for the compose failures the runbook lists under Common Issues. */
function hintFor(output: string, project: string): string {
  if (/address already in use|port is already allocated/i.test(output))
    return ' — a port is already in use: find the process (netstat -tulpn) and stop it, or change the port'
  if (/network|address pools|iptables/i.test(output))
    return ` — a Docker network problem: docker network inspect ${project}_default; docker network prune -f; then retry`
  if (/no such image|pull access denied|manifest unknown|not found: manifest/i.test(output))
    return ' — the image is not on this host: build, pull or load it first'
  return ` — check \`docker compose -p ${project} config\` and \`docker compose -p ${project} logs\``
}

interface EventMessage {
  Action?: string
  Actor?: { Attributes?: Record<string, string> }
}

export function createComposeRuntime(config: Config, options: ComposeRuntimeOptions = {}): ComposeRuntime {
  const baseEnv = options.env ?? process.env
  const docker = options.docker ?? dockerFor(baseEnv)
  const explicit = dockerEndpoint(docker)
  const endpoint = explicit ?? 'the default socket (/var/run/docker.sock)'
  // compose must talk to the daemon dockerode reads.
  const env: NodeJS.ProcessEnv = explicit ? { ...baseEnv, DOCKER_HOST: explicit } : { ...baseEnv }
  let compose: Promise<string[]> | undefined = options.compose
    ? Promise.resolve([...options.compose])
    : undefined
  const composeCommand = (): Promise<string[]> => (compose ??= detectCompose(env))

  const spec = (color: Color): NonNullable<Config['targets']['blue']['compose']> => {
    const c = config.targets[color].compose
    if (!c)
      throw new UserError(`targets.${color}.compose is missing — the compose runtime needs it`, 'bad_config')
    return c
  }
  const composeFile = (color: Color): string => {
    const file = path.resolve(spec(color).file)
    if (!existsSync(file))
      throw new UserError(
        `targets.${color}.compose.file: ${file} does not exist — restore it from the backup or fix the path`,
        'bad_config'
      )
    return file
  }
  const pinFile = (color: Color): string =>
    path.resolve(config.state.dir, 'compose', `${normalizeProject(spec(color).project)}.pin.yml`)

  async function api<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call()
    } catch (e) {
      throw dockerError(e, endpoint)
    }
  }

  /** Runs compose for the colour's project: -p PROJECT -f FILE [-f PIN] ARGS, in the file's directory. */
  async function runCompose(
    color: Color,
    args: string[],
    timeoutMs = 10 * 60 * 1000
  ): Promise<CommandResult> {
    const { project } = spec(color)
    const file = composeFile(color)
    const files = ['-f', file, ...(existsSync(pinFile(color)) ? ['-f', pinFile(color)] : [])]
    const argv = [...(await composeCommand()), '-p', project, ...files, ...args]
    return runCommand(argv, { cwd: path.dirname(file), env, timeoutMs })
  }

  async function containers(color: Color, allServices = false): Promise<Dockerode.ContainerInfo[]> {
    const { project, service } = spec(color)
    const labels = [`${PROJECT_LABEL}=${normalizeProject(project)}`]
    if (!allServices) labels.push(`${SERVICE_LABEL}=${service}`)
    const list = await api(() => docker.listContainers({ all: true, filters: { label: labels } }))
    return list
      .filter(c => c.Labels[ONEOFF_LABEL] !== 'True')
      .sort((a, b) => (a.Names[0] ?? '').localeCompare(b.Names[0] ?? ''))
  }

  async function describe(color: Color, allServices = false): Promise<ComposeContainer[]> {
    const found = await containers(color, allServices)
    return Promise.all(
      found.map(async info => {
        const c = await api(() => docker.getContainer(info.Id).inspect())
        return {
          id: c.Id,
          name: c.Name.replace(/^\//, ''),
          project: info.Labels[PROJECT_LABEL] ?? '',
          service: info.Labels[SERVICE_LABEL] ?? '',
          state: c.State.Status,
          status: info.Status,
          health: c.State.Health?.Status ?? 'none',
          exitCode: c.State.ExitCode,
          startedAt: c.State.StartedAt,
          image: c.Config.Image,
          imageId: c.Image,
          ports: info.Ports.filter(p => p.PublicPort).map(
            p => `${p.IP ?? ''}:${p.PublicPort}->${p.PrivatePort}/${p.Type}`
          )
        }
      })
    )
  }

  const summary = (list: ComposeContainer[]): string =>
    list
      .map(c => {
        const health = c.health === 'none' ? '' : `, ${c.health}`
        const exited = c.state === 'exited' ? ` (exit ${c.exitCode})` : ''
        return `${c.name} ${c.state}${exited}${health} (${c.image})`
      })
      .join('; ')

  async function state(color: Color): Promise<{ running: boolean; detail: string }> {
    const list = await describe(color)
    if (list.length === 0) return { running: false, detail: 'stopped (no containers)' }
    const running = list.every(c => c.state === 'running')
    return { running, detail: `${running ? 'running' : 'not running'}: ${summary(list)}` }
  }

  async function ping(): Promise<void> {
    await api(() => docker.ping())
  }

  /** The images the compose configuration names, service by service (after interpolation and the pin). */
  async function configuredImages(color: Color): Promise<{ service: string; image: string }[]> {
    const result = await runCompose(color, ['config'])
    if (result.code !== 0)
      throw new OperationError(
        `compose config for targets.${color} failed: ${tail(result)}${hintFor(tail(result), spec(color).project)}`,
        'compose_config_failed'
      )
    const doc = parse(result.stdout) as { services?: Record<string, { image?: unknown }> } | null
    return Object.entries(doc?.services ?? {})
      .filter(([, s]) => typeof s.image === 'string')
      .map(([service, s]) => ({ service, image: String(s.image) }))
  }

  async function imageRecord(service: string, image: string, id?: string): Promise<ComposeImage> {
    try {
      const found = await api(() => docker.getImage(id ?? image).inspect())
      const digests = found.RepoDigests ?? []
      return {
        service,
        image,
        id: found.Id,
        tags: found.RepoTags ?? [],
        digests,
        pin: digests[0] ?? found.Id
      }
    } catch (e) {
      if (e instanceof UserError) throw e
      return { service, image, id: id ?? '', tags: [], digests: [], pin: id ?? image }
    }
  }

  /** The kill and die events of the project since `since` (ms), to tell a graceful stop from a kill. */
  async function stopEvents(color: Color, since: number): Promise<EventMessage[]> {
    const stream = await api(() =>
      docker.getEvents({
        since: Math.floor(since / 1000) - 1,
        until: Number((Date.now() / 1000).toFixed(3)),
        filters: {
          type: ['container'],
          event: ['kill', 'die'],
          label: [`${PROJECT_LABEL}=${normalizeProject(spec(color).project)}`]
        }
      })
    )
    const chunks: Buffer[] = []
    for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)))
    return Buffer.concat(chunks)
      .toString('utf8')
      .split('\n')
      .filter(line => line.trim())
      .map(line => JSON.parse(line) as EventMessage)
  }

  return {
    kind: 'compose',
    composeCommand,
    pinFile,
    state,

    async start(color) {
      await ping()
      const began = Date.now()
      const result = await runCompose(color, ['up', '-d'])
      if (result.code !== 0)
        throw new OperationError(
          `compose up -d for targets.${color} (project ${spec(color).project}) failed: ${tail(result)}` +
            hintFor(tail(result), spec(color).project),
          'compose_up_failed'
        )
      const now = await state(color)
      return `up -d in ${((Date.now() - began) / 1000).toFixed(1)}s: ${now.detail}`
    },

    async stop(color, timeoutMs) {
      await ping()
      const seconds = Math.max(0, Math.ceil(timeoutMs / 1000))
      const before = await containers(color, true)
      const running = before.filter(c => c.State === 'running').length
      const began = Date.now()
      const result = await runCompose(color, ['down', '--timeout', String(seconds)], timeoutMs + 120000)
      const elapsed = ((Date.now() - began) / 1000).toFixed(1)
      if (result.code !== 0)
        throw new OperationError(
          `compose down --timeout ${seconds} for targets.${color} (project ${spec(color).project}) failed: ${tail(result)}` +
            hintFor(tail(result), spec(color).project),
          'compose_down_failed'
        )
      if (running === 0)
        return before.length ? `not running (removed ${before.length} stopped containers)` : 'not running'
      const events = before.length ? await stopEvents(color, began) : []
      const killed = events.some(
        e =>
          (e.Action === 'kill' && ['9', 'SIGKILL', 'KILL'].includes(e.Actor?.Attributes?.signal ?? '')) ||
          (e.Action === 'die' && e.Actor?.Attributes?.exitCode === '137')
      )
      if (killed)
        return `did not stop in ${seconds}s: killed (compose down --timeout ${seconds}, ${elapsed}s)`
      return `terminated in ${elapsed}s (compose down --timeout ${seconds}, ${running} container${running === 1 ? '' : 's'})`
    },

    async images(color) {
      const list = await describe(color, true)
      if (list.length > 0) return Promise.all(list.map(c => imageRecord(c.service, c.image, c.imageId)))
      const configured = await configuredImages(color)
      return Promise.all(configured.map(c => imageRecord(c.service, c.image)))
    },

    async pinImage(color, digestOrTag) {
      const { service } = spec(color)
      const file = composeFile(color)
      let reference = digestOrTag.trim()
      if (!reference)
        throw new UserError(`pinImage: an image reference is needed for targets.${color}`, 'bad_input')
      if (!reference.includes(':') && !reference.includes('@')) {
        // A bare tag (the runbook's IMAGE_TAG): in the repository the compose file names for the service.
        const configured = (await configuredImages(color)).find(c => c.service === service)
        if (!configured)
          throw new UserError(
            `targets.${color}.compose: service "${service}" has no image in ${file} — pin a full reference`,
            'bad_config'
          )
        reference = `${configured.image.replace(/@.*$/, '').replace(/:[^:/]*$/, '')}:${reference}`
      }
      let found: Dockerode.ImageInspectInfo
      try {
        found = await api(() => docker.getImage(reference).inspect())
      } catch (e) {
        if (e instanceof UserError) throw e
        throw new UserError(
          `image ${reference} is not on this Docker host (${endpoint}): ${messageOf(e)} — pull, load or build it, then pin again`,
          'image_missing'
        )
      }
      const exact = reference.includes('@sha256:') || reference.startsWith('sha256:') ? reference : found.Id
      const userDoc = parse(readFileSync(file, 'utf8')) as { version?: unknown } | null
      const override: Record<string, unknown> = {}
      // Compose v1 refuses an override whose version differs from the file's.
      if (userDoc && typeof userDoc === 'object' && userDoc.version !== undefined)
        override.version = userDoc.version
      override.services = { [service]: { image: exact } }
      const target = pinFile(color)
      mkdirSync(path.dirname(target), { recursive: true })
      writeFileSync(
        target,
        `# Written by backout: pins ${service} to ${reference}. Remove this file to unpin.\n${stringify(override)}`
      )
      return exact === reference
        ? `pinned ${service} to ${exact}`
        : `pinned ${service} to ${reference} (${exact})`
    },

    unpin(color) {
      const target = pinFile(color)
      if (!existsSync(target)) return 'not pinned'
      rmSync(target, { force: true })
      return `unpinned ${spec(color).service}`
    },

    containersJson(color) {
      return describe(color, true)
    },

    async waitHealthy(color, signal, options = {}) {
      const intervalMs = options.intervalMs ?? config.health.intervalSeconds * 1000
      const timeoutMs = options.timeoutMs ?? config.health.waitSeconds * 1000
      const deadline = Date.now() + timeoutMs
      const began = Date.now()
      for (;;) {
        const list = await describe(color)
        const ready =
          list.length > 0 &&
          list.every(c => c.state === 'running' && (c.health === 'healthy' || c.health === 'none'))
        if (ready) return `healthy in ${((Date.now() - began) / 1000).toFixed(1)}s: ${summary(list)}`
        if (Date.now() >= deadline) {
          const { project, service } = spec(color)
          const last = list.length ? summary(list) : 'no containers'
          const probe = await lastHealthOutput(list[0]?.id)
          throw new OperationError(
            `services did not become healthy in time: targets.${color} (project ${project}, service ${service}) ` +
              `after ${Math.round(timeoutMs / 1000)}s: ${last}${probe ? `; last healthcheck: ${probe}` : ''} — ` +
              `check \`docker compose -p ${project} logs ${service}\`, a port already in use, and \`docker compose config\``,
            'unhealthy'
          )
        }
        await sleep(Math.min(intervalMs, Math.max(0, deadline - Date.now())), signal)
        signal?.throwIfAborted()
      }
    }
  }

  async function lastHealthOutput(id: string | undefined): Promise<string> {
    if (!id) return ''
    try {
      const c = await docker.getContainer(id).inspect()
      const log = c.State.Health?.Log ?? []
      const last = log[log.length - 1]
      return last ? `exit ${last.ExitCode}: ${last.Output.trim().slice(0, 200) || '(no output)'}` : ''
    } catch {
      return ''
    }
  }
}
