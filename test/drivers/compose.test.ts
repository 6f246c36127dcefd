import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import Dockerode from 'dockerode'
import { parseConfig, type Color, type Config } from '../../src/core/config'
import { OperationError, UserError } from '../../src/core/errors'
import { createComposeRuntime, detectCompose, type ComposeRuntime } from '../../src/drivers/compose'
import {
  buildAppImages,
  hasDocker,
  noDockerReason,
  startDockerEngine,
  type AppImage,
  type DockerEngine
} from '../support/docker-engine'
import { describeWith } from '../support/real-system'
import { freePort } from '../support/ports'

/**
 * The compose runtime against a real Docker Engine (a private dockerd, images built locally from busybox)
 * with each Compose the machine has: v1 (docker-compose) and v2 (the `docker compose` plugin).
 */

const variants: { name: string; argv: string[] }[] = []
if (hasDocker) {
  if (spawnSync('docker', ['compose', 'version']).status === 0)
    variants.push({ name: 'v2', argv: ['docker', 'compose'] })
  if (spawnSync('docker-compose', ['version']).status === 0)
    variants.push({ name: 'v1', argv: ['docker-compose'] })
} else if (!variants.some(v => v.name === 'v2'))
  console.warn(
    'compose v2 (`docker compose`) is not installed here: the compose runtime is tested with v1 only'
  )

const HEALTHCHECK = (urlPath: string): string[] => [
  'CMD',
  '/bin/busybox',
  'wget',
  '-q',
  '-O',
  '/dev/null',
  `http://127.0.0.1${urlPath}`
]

/** A compose file in the runbook's shape: the image by ${IMAGE_TAG}, .env beside it. */
function writeProject(
  dir: string,
  port: number,
  tag: string,
  extra: { healthPath?: string; stopSignal?: string } = {}
): string {
  mkdirSync(dir, { recursive: true })
  const file = path.join(dir, 'docker-compose.yml')
  const service: Record<string, unknown> = {
    image: 'spacetime:${IMAGE_TAG}',
    init: true,
    ports: [`127.0.0.1:${port}:80`],
    healthcheck: {
      test: HEALTHCHECK(extra.healthPath ?? '/health'),
      interval: '1s',
      timeout: '2s',
      retries: 2
    }
  }
  if (extra.stopSignal) service.stop_signal = extra.stopSignal
  writeFileSync(file, JSON.stringify({ version: '2.4', services: { app: service } }, null, 2) + '\n')
  writeFileSync(path.join(dir, '.env'), `IMAGE_TAG=${tag}\n`)
  return file
}

function makeConfig(
  root: string,
  ports: Record<Color, number>,
  files: Record<Color, string>,
  projects: Record<Color, string>
): Config {
  return parseConfig(
    {
      service: 'spacetime',
      runtime: 'compose',
      targets: {
        blue: {
          version: 'v2.4.9',
          upstream: `127.0.0.1:${ports.blue}`,
          compose: { project: projects.blue, file: files.blue, service: 'app' }
        },
        green: {
          version: 'v2.5.0',
          upstream: `127.0.0.1:${ports.green}`,
          compose: { project: projects.green, file: files.green, service: 'app' }
        }
      },
      nginx: { upstreamFile: path.join(root, 'upstream.conf'), url: 'http://127.0.0.1:1/' },
      backups: { dir: path.join(root, 'backups') },
      state: { dir: path.join(root, 'state') }
    },
    'compose.test'
  )
}

async function getJson(port: number, urlPath: string): Promise<Record<string, unknown>> {
  const res = await fetch(`http://127.0.0.1:${port}${urlPath}`, { signal: AbortSignal.timeout(3000) })
  expect(res.status).toBe(200)
  return JSON.parse(await res.text()) as Record<string, unknown>
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(2)}s`

const maybe = describeWith(hasDocker ? '' : noDockerReason, 'compose runtime tests')

maybe('compose runtime (real dockerd)', () => {
  let engine: DockerEngine
  let images: { blue: AppImage; green: AppImage }
  let root: string
  const timings: string[] = []

  beforeAll(async () => {
    root = mkdtempSync(path.join(tmpdir(), 'backout-compose-'))
    const began = Date.now()
    engine = await startDockerEngine()
    timings.push(`dockerd ready in ${seconds(Date.now() - began)}`)
    const built = Date.now()
    images = await buildAppImages(engine)
    timings.push(`both images built in ${seconds(Date.now() - built)}`)
  }, 60000)

  afterAll(async () => {
    await engine?.stop()
    if (root) rmSync(root, { recursive: true, force: true })
    console.log(`compose runtime timings:\n  ${timings.join('\n  ')}`)
  }, 60000)

  test('detectCompose finds a compose here and refuses, with the remedy, where there is none', async () => {
    expect(await detectCompose(engine.env)).toEqual(variants[0]?.argv)
    const empty = mkdtempSync(path.join(root, 'nopath-'))
    const error = await detectCompose({ ...engine.env, PATH: empty }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(UserError)
    expect((error as UserError).message).toMatch(
      /Docker Compose not found.*docker-compose-plugin.*\/usr\/local\/bin\/docker-compose/s
    )
    expect((error as UserError).reasonCode).toBe('compose_not_found')
  })

  test('a daemon that is not running is a UserError naming the socket tried', async () => {
    const socket = path.join(root, 'nothing-here.sock')
    const config = makeConfig(
      root,
      { blue: 1, green: 2 },
      { blue: 'x.yml', green: 'y.yml' },
      { blue: 'b', green: 'g' }
    )
    const runtime = createComposeRuntime(config, {
      docker: new Dockerode({ socketPath: socket }),
      compose: ['docker-compose']
    })
    const error = await runtime.state('blue').catch((e: unknown) => e)
    expect(error).toBeInstanceOf(UserError)
    expect((error as UserError).message).toContain(
      'Docker is not running — start it (systemctl start docker / dockerd)'
    )
    expect((error as UserError).message).toContain(`unix://${socket}`)
    const start = await runtime.start('blue').catch((e: unknown) => e)
    expect(start).toBeInstanceOf(UserError)
  })

  describe.each(variants)('compose $name', ({ name, argv }) => {
    let runtime: ComposeRuntime
    let config: Config
    let ports: Record<Color, number>
    let dir: string

    beforeAll(async () => {
      dir = mkdtempSync(path.join(root, `${name}-`))
      ports = { blue: await freePort(), green: await freePort() }
      const files = {
        blue: writeProject(path.join(dir, 'blue'), ports.blue, 'v2.4.9'),
        green: writeProject(path.join(dir, 'green'), ports.green, 'v2.5.0')
      }
      config = makeConfig(dir, ports, files, { blue: 'spacetime-blue', green: 'spacetime-green' })
      runtime = createComposeRuntime(config, { docker: engine.docker, compose: argv, env: engine.env })
    })

    afterAll(async () => {
      // Each variant leaves nothing behind for the next one.
      for (const color of ['blue', 'green'] as const) await runtime.stop(color, 1000).catch(() => undefined)
    })

    test('a project that was never started is stopped', async () => {
      expect(await runtime.state('blue')).toEqual({ running: false, detail: 'stopped (no containers)' })
      expect(await runtime.stop('blue', 30000)).toBe('not running')
    })

    test('start both: running, healthy by Docker healthcheck, each answers /health as its colour', async () => {
      for (const color of ['blue', 'green'] as const) {
        const began = Date.now()
        const detail = await runtime.start(color)
        const waited = await runtime.waitHealthy(color, undefined, { intervalMs: 250, timeoutMs: 30000 })
        timings.push(
          `${name}: start ${color} (up -d) ${detail.match(/in ([\d.]+s)/)?.[1]}, healthy after ${seconds(Date.now() - began)}`
        )
        expect(detail).toMatch(/^up -d in [\d.]+s: running: spacetime-\w+[-_]app[-_]1 running/)
        expect(waited).toMatch(/^healthy in/)
        const state = await runtime.state(color)
        expect(state.running).toBe(true)
        expect(state.detail).toMatch(/running, healthy \(spacetime:v2\.(4\.9|5\.0)\)/)
      }
      expect(await getJson(ports.blue, '/health')).toEqual({
        status: 'ok',
        environment: 'blue',
        version: 'v2.4.9'
      })
      expect(await getJson(ports.green, '/health')).toEqual({
        status: 'ok',
        environment: 'green',
        version: 'v2.5.0'
      })
      expect(await getJson(ports.blue, '/status')).toMatchObject({ overall_ready: true })
    })

    test('containersJson and images describe what runs, with tags and image IDs', async () => {
      const [container, ...more] = await runtime.containersJson('blue')
      expect(more).toHaveLength(0)
      expect(container).toMatchObject({
        project: 'spacetime-blue',
        service: 'app',
        state: 'running',
        health: 'healthy',
        image: 'spacetime:v2.4.9',
        imageId: images.blue.id,
        ports: [`127.0.0.1:${ports.blue}->80/tcp`]
      })
      expect(JSON.parse(JSON.stringify(container))).toEqual(container)

      const green = await runtime.images('green')
      expect(green).toEqual([
        {
          service: 'app',
          image: 'spacetime:v2.5.0',
          id: images.green.id,
          tags: ['spacetime:v2.5.0'],
          digests: [], // built here, never pushed: no registry digest, the image ID is the exact reference
          pin: images.green.id
        }
      ])
      expect(images.green.id).toMatch(/^sha256:[0-9a-f]{64}$/)
    })

    test('stop green gracefully: compose down --timeout 30 ends in well under the timeout', async () => {
      const began = Date.now()
      const outcome = await runtime.stop('green', 30000)
      const took = Date.now() - began
      timings.push(`${name}: stop green (down --timeout 30) ${seconds(took)} — ${outcome}`)
      expect(outcome).toMatch(/^terminated in [\d.]+s \(compose down --timeout 30, 1 container\)$/)
      expect(took).toBeLessThan(10000)
      expect(await runtime.state('green')).toEqual({ running: false, detail: 'stopped (no containers)' })
      expect(await runtime.containersJson('green')).toEqual([])
      // Blue is untouched.
      expect((await runtime.state('blue')).running).toBe(true)
      // Stopped: images come from the compose configuration.
      const [configured] = await runtime.images('green')
      expect(configured).toMatchObject({ service: 'app', image: 'spacetime:v2.5.0', id: images.green.id })
    })

    test('pinImage by image ID, then up -d: green runs exactly v2.4.9', async () => {
      const [blueImage] = await runtime.images('blue')
      expect(blueImage?.pin).toBe(images.blue.id)
      expect(await runtime.pinImage('green', blueImage?.pin ?? '')).toBe(`pinned app to ${images.blue.id}`)
      expect(readFileSync(runtime.pinFile('green'), 'utf8')).toContain(`image: ${images.blue.id}`)
      const began = Date.now()
      await runtime.start('green')
      await runtime.waitHealthy('green', undefined, { intervalMs: 250, timeoutMs: 30000 })
      timings.push(`${name}: pinned green up -d + healthy ${seconds(Date.now() - began)}`)
      expect(await getJson(ports.green, '/health')).toEqual({
        status: 'ok',
        environment: 'blue',
        version: 'v2.4.9'
      })
      const [running] = await runtime.images('green')
      expect(running).toMatchObject({ id: images.blue.id, tags: ['spacetime:v2.4.9'] })
    })

    test('unpin: up -d goes back to the compose file (v2.5.0); a bare tag pins in the file’s repository', async () => {
      expect(runtime.unpin('green')).toBe('unpinned app')
      expect(existsSync(runtime.pinFile('green'))).toBe(false)
      await runtime.start('green')
      await runtime.waitHealthy('green', undefined, { intervalMs: 250, timeoutMs: 30000 })
      expect(await getJson(ports.green, '/health')).toMatchObject({ version: 'v2.5.0' })

      expect(await runtime.pinImage('green', 'v2.4.9')).toBe(
        `pinned app to spacetime:v2.4.9 (${images.blue.id})`
      )
      await runtime.start('green')
      await runtime.waitHealthy('green', undefined, { intervalMs: 250, timeoutMs: 30000 })
      expect(await getJson(ports.green, '/health')).toMatchObject({ version: 'v2.4.9' })
      runtime.unpin('green')
    })

    test('pinning an image this host does not have is refused before anything changes', async () => {
      const error = await runtime.pinImage('green', 'spacetime:v9.9.9').catch((e: unknown) => e)
      expect(error).toBeInstanceOf(UserError)
      expect((error as UserError).message).toMatch(
        /image spacetime:v9\.9\.9 is not on this Docker host .* pull, load or build it/
      )
      expect(existsSync(runtime.pinFile('green'))).toBe(false)
    })
  })

  const firstVariant = variants[0]
  ;(firstVariant ? test : test.skip)(
    'an unhealthy service fails waitHealthy with the cause; one that ignores SIGTERM is reported killed',
    async () => {
      const dir = mkdtempSync(path.join(root, 'stubborn-'))
      const port = await freePort()
      // SIGWINCH: tini passes it on, httpd ignores it — so only the SIGKILL after the timeout stops it.
      const file = writeProject(path.join(dir, 'app'), port, 'v2.4.9', {
        healthPath: '/missing',
        stopSignal: 'SIGWINCH'
      })
      const config = makeConfig(
        dir,
        { blue: port, green: port + 1 },
        { blue: file, green: file },
        { blue: 'spacetime-stubborn', green: 'unused' }
      )
      const runtime = createComposeRuntime(config, {
        docker: engine.docker,
        compose: firstVariant?.argv,
        env: engine.env
      })
      await runtime.start('blue')
      const error = await runtime
        .waitHealthy('blue', undefined, { intervalMs: 250, timeoutMs: 5000 })
        .catch((e: unknown) => e)
      expect(error).toBeInstanceOf(OperationError)
      expect((error as OperationError).message).toMatch(
        /services did not become healthy in time: targets\.blue \(project spacetime-stubborn, service app\) after 5s: .*running, (unhealthy|starting).*last healthcheck: exit 1.*docker compose -p spacetime-stubborn logs app/s
      )
      const aborted = new AbortController()
      aborted.abort(new Error('operator cancelled'))
      await expect(
        runtime.waitHealthy('blue', aborted.signal, { intervalMs: 250, timeoutMs: 5000 })
      ).rejects.toThrow('operator cancelled')

      const began = Date.now()
      const outcome = await runtime.stop('blue', 1000)
      const took = Date.now() - began
      timings.push(`stubborn: stop (down --timeout 1, SIGTERM ignored) ${seconds(took)} — ${outcome}`)
      expect(outcome).toMatch(/^did not stop in 1s: killed/)
      expect(took).toBeGreaterThanOrEqual(1000)
      expect((await runtime.state('blue')).running).toBe(false)
    }
  )

  test('a missing compose file or compose section is a UserError naming the key', async () => {
    const config = makeConfig(
      root,
      { blue: 1, green: 2 },
      { blue: path.join(root, 'gone.yml'), green: 'y.yml' },
      { blue: 'b', green: 'g' }
    )
    const runtime = createComposeRuntime(config, {
      docker: engine.docker,
      compose: ['docker-compose'],
      env: engine.env
    })
    await expect(runtime.start('blue')).rejects.toThrow(
      /targets\.blue\.compose\.file: .*gone\.yml does not exist/
    )
    delete config.targets.green.compose
    await expect(runtime.state('green')).rejects.toThrow('targets.green.compose is missing')
  })
})
