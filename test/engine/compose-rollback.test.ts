import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { MemoryLogger } from '../../src/core/logger'
import type { RunRecord } from '../../src/core/run-record'
import { timelineText } from '../../src/core/timeline'
import { sha256File } from '../../src/drivers/backup-store'
import { loadConfig } from '../../src/drivers/config-file'
import { pgQuery } from '../../src/drivers/database'
import { findPgBinDir } from '../../src/drivers/postgres-cluster'
import { rollbackWithEscalation } from '../../src/engine/escalate'
import { recordedImage } from '../../src/engine/level2'
import { rollback } from '../../src/engine/rollback'
import { createService, type Service } from '../../src/engine/service'
import { configEntryPath } from '../../src/engine/snapshot'
import {
  composeSandboxDown,
  composeSandboxUp,
  type ComposeSandboxState
} from '../../src/sandbox/compose-sandbox'
import { sandboxNginxTest } from '../../src/sandbox/sandbox'
import { describeWith } from '../support/real-system'
import { hasDocker, noDockerReason, startDockerEngine, type DockerEngine } from '../support/docker-engine'
import { whoServes } from '../support/cli'

/**
 * Every rollback level a compose stack needs, end to end: a real Docker Engine (a private dockerd, the app images
 * built locally from busybox), the app as the compose projects spacetime-blue and spacetime-green, real nginx in
 * front and a real PostgreSQL — the compose sandbox (`sandbox up --runtime compose`). The engine reaches the
 * private dockerd the way the CLI does: DOCKER_HOST in the environment.
 */

const pgBin = findPgBinDir()
const skipReason = !hasDocker ? noDockerReason : !pgBin ? 'PostgreSQL is not installed' : ''
const maybe = describeWith(skipReason, 'compose rollback tests')

jest.setTimeout(150_000)

const LEVEL2_STEPS = [
  'Preparation',
  'Safety backup',
  'Stop current deployment',
  'Roll back database migrations',
  'Database integrity check',
  'Restore configuration',
  'Deploy previous version',
  'Wait for health',
  'Report',
  'Final validation'
]

async function dataOf(
  url: string
): Promise<{ counts: Record<string, number>; users: string; games: string }> {
  const [row] = await pgQuery<{
    users: string
    sessions: string
    game_state: string
    digest: string
    games: string
  }>(
    url,
    `SELECT (SELECT count(*) FROM users)::text AS users, (SELECT count(*) FROM sessions)::text AS sessions,
            (SELECT count(*) FROM game_state)::text AS game_state,
            (SELECT md5(string_agg(id || ':' || name || ':' || email || ':' || created_at, ',' ORDER BY id)) FROM users) AS digest,
            (SELECT md5(string_agg(id || ':' || session_id || ':' || state::text, ',' ORDER BY id)) FROM game_state) AS games`
  )
  return {
    counts: {
      users: Number(row?.users),
      sessions: Number(row?.sessions),
      game_state: Number(row?.game_state)
    },
    users: row?.digest ?? '',
    games: row?.games ?? ''
  }
}

async function schemaOf(url: string): Promise<{ max: number; preferences: boolean }> {
  const [row] = await pgQuery<{ max: string; pref: boolean }>(
    url,
    `SELECT (SELECT max(version) FROM schema_migrations)::text AS max,
            EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'preferences') AS pref`
  )
  return { max: Number(row?.max), preferences: Boolean(row?.pref) }
}

const stepTimes = (record: RunRecord): string =>
  record.steps.map(s => `${s.name} ${((s.durationMs ?? 0) / 1000).toFixed(2)}s`).join(', ')

maybe('rollback on the compose runtime (real dockerd, PostgreSQL, nginx)', () => {
  let engine: DockerEngine | undefined
  let previousHost: string | undefined
  let root: string
  let sandbox: ComposeSandboxState | undefined
  const timings: string[] = []

  beforeAll(async () => {
    root = mkdtempSync(path.join(tmpdir(), 'backout-compose-rb-'))
    chmodSync(root, 0o755) // PostgreSQL runs as postgres and must reach its data directory
    const began = Date.now()
    engine = await startDockerEngine()
    timings.push(`dockerd ready in ${((Date.now() - began) / 1000).toFixed(2)}s`)
    previousHost = process.env.DOCKER_HOST
    // What an operator does: export DOCKER_HOST; createService → createRuntime → the compose runtime reads it.
    process.env.DOCKER_HOST = engine.env.DOCKER_HOST
  }, 60_000)

  afterEach(async () => {
    if (sandbox) await composeSandboxDown(sandbox.dir, new MemoryLogger()).catch(() => undefined)
    sandbox = undefined
  }, 60_000)

  afterAll(async () => {
    if (previousHost === undefined) delete process.env.DOCKER_HOST
    else process.env.DOCKER_HOST = previousHost
    await engine?.stop()
    if (root) rmSync(root, { recursive: true, force: true })
    console.log(`compose rollback timings:\n  ${timings.join('\n  ')}`)
  }, 60_000)

  async function up(name: string): Promise<{ state: ComposeSandboxState; service: Service; url: string }> {
    const log = new MemoryLogger()
    const began = Date.now()
    const dir = path.join(root, name)
    try {
      sandbox = await composeSandboxUp({ dir, log })
    } catch (e) {
      await composeSandboxDown(dir, log).catch(() => undefined)
      throw e
    }
    timings.push(`${name}: sandbox up --runtime compose in ${((Date.now() - began) / 1000).toFixed(2)}s`)
    const config = loadConfig(sandbox.config)
    if (config.database?.kind !== 'postgres') throw new Error('the compose sandbox runs PostgreSQL')
    return { state: sandbox, service: createService(config, log), url: config.database.url }
  }

  /** The containers of a project, as Docker reports them, found by compose's labels. */
  async function containersOf(project: string): Promise<{ id: string; state: string; image: string }[]> {
    const list = await engine!.docker.listContainers({
      all: true,
      filters: { label: [`com.docker.compose.project=${project}`] }
    })
    return list.map(c => ({ id: c.Id, state: c.State, image: c.Image }))
  }

  test('the sandbox is the scenario: green v2.5.0 live at schema 105 on compose, blue v2.4.9 idle', async () => {
    const { state, service, url } = await up('scenario')
    expect(service.runtime.kind).toBe('compose')
    expect(await schemaOf(url)).toEqual({ max: 105, preferences: true })
    expect(new Set(await whoServes(`http://127.0.0.1:${state.nginxPort}`, 10))).toEqual(new Set(['green']))
    expect((await service.runtime.state('blue')).running).toBe(true)
    expect((await containersOf('spacetime-green'))[0]?.image).toBe('spacetime:v2.5.0')
    expect(readFileSync(path.join(state.dir, 'compose/green/.env'), 'utf8')).toContain('IMAGE_TAG=v2.5.0')
    expect(readFileSync(state.config, 'utf8')).toMatch(/^runtime: compose$/m)
  })

  test('Level 1 on compose: nginx serves only blue, green’s containers stop gracefully, no data changes', async () => {
    const { state, service, url } = await up('level1')
    const before = await dataOf(url)
    const nginxUrl = `http://127.0.0.1:${state.nginxPort}`
    const since = Math.floor(Date.now() / 1000)

    const { record, error } = await rollback(service, {
      level: 1,
      reason: 'v2.5.0 fails 30% of requests',
      dryRun: false,
      confirm: () => Promise.resolve(true)
    })
    console.log(timelineText(record))
    expect(error).toBeUndefined()
    expect(record.status).toBe('success')
    timings.push(`level1: Level 1 in ${((record.durationMs ?? 0) / 1000).toFixed(2)}s — ${stepTimes(record)}`)

    expect(new Set(await whoServes(nginxUrl, 30))).toEqual(new Set(['blue']))
    const stop = record.steps.find(s => s.name === 'Stop failed environment')
    expect(stop?.detail).toMatch(/terminated in [\d.]+s \(compose down --timeout 10, 1 container\)/)
    // Gracefully: Docker saw SIGTERM and no SIGKILL, and the container exited on its own.
    const events = await engine!.docker.getEvents({
      since,
      until: Math.ceil(Date.now() / 1000),
      filters: {
        type: ['container'],
        event: ['kill', 'die'],
        label: ['com.docker.compose.project=spacetime-green']
      }
    })
    const chunks: Buffer[] = []
    for await (const chunk of events as AsyncIterable<Buffer | string>) chunks.push(Buffer.from(chunk))
    const lines = Buffer.concat(chunks).toString('utf8').trim().split('\n').filter(Boolean)
    const parsed = lines.map(
      l => JSON.parse(l) as { Action: string; Actor: { Attributes: Record<string, string> } }
    )
    const kills = parsed.filter(e => e.Action === 'kill').map(e => e.Actor.Attributes.signal)
    const dies = parsed.filter(e => e.Action === 'die').map(e => e.Actor.Attributes.exitCode)
    expect(kills).toEqual(['15'])
    expect(dies).toHaveLength(1)
    expect(dies).not.toContain('137')
    expect(await containersOf('spacetime-green')).toEqual([])
    expect((await service.runtime.state('green')).running).toBe(false)
    expect((await service.runtime.state('blue')).running).toBe(true)
    expect(await dataOf(url)).toEqual(before)
    expect(await schemaOf(url)).toEqual({ max: 105, preferences: true })
    expect(await sandboxNginxTest(state.dir)).toBe(true)
  })

  test('Level 2 on compose: v2.5.0/105 → v2.4.9/104, configs restored, data intact, the recorded image running', async () => {
    const { state, service, url } = await up('level2')
    const before = await dataOf(url)
    expect(await schemaOf(url)).toEqual({ max: 105, preferences: true })
    const release = service.store.list().find(b => b.manifest.kind === 'snapshot')
    if (!release) throw new Error('sandbox up took no release snapshot')
    const recorded = recordedImage(release, service.config, 'blue')
    if (recorded) {
      // The backup pins blue by image: move the mutable tag v2.4.9 onto another image, as a re-push would.
      await engine!.docker.getImage(state.images.green.id).tag({ repo: 'spacetime', tag: 'v2.4.9' })
    } else
      console.warn(
        `${release.id}/images.txt records no image ID or digest (${readFileSync(path.join(release.dir, 'images.txt'), 'utf8').trim()}): ` +
          'Level 2 starts blue from the restored compose configuration (IMAGE_TAG), not a pin'
      )

    // Blue went down too: Level 1 cannot help, so the rollback escalates to Level 2 (the runbook's "When Level 1 fails").
    await service.runtime.stop('blue', 10_000)
    const began = Date.now()
    const { results, succeeded } = await rollbackWithEscalation(service, {
      level: 1,
      reason: 'migration 105 broke the lobby',
      dryRun: false,
      confirm: () => Promise.resolve(true)
    })
    const elapsed = Date.now() - began
    const [l1, l2] = results
    if (l2) console.log(timelineText(l2.record))
    expect(results.map(r => [r.record.level, r.record.status])).toEqual([
      [1, 'refused'],
      [2, 'success']
    ])
    expect(succeeded).toBe(2)
    expect(l1?.record.reasonCode).toBe('previous_unhealthy')
    const record = l2!.record
    timings.push(
      `level2: Level 1 refused + Level 2 in ${(elapsed / 1000).toFixed(2)}s; Level 2 ${((record.durationMs ?? 0) / 1000).toFixed(2)}s — ${stepTimes(record)}`
    )
    expect(record.steps.map(s => s.name)).toEqual(LEVEL2_STEPS)
    expect(record.from).toBe('v2.5.0')
    expect(record.to).toBe('v2.4.9')
    expect(record.backupId).toBe(release.id)
    expect(record.steps.find(s => s.name === 'Roll back database migrations')?.detail).toMatch(
      /ran 105 down under advisory lock/
    )
    expect(record.dataLoss).toBeUndefined()

    // The database: schema 104, every row as before.
    expect(await schemaOf(url)).toEqual({ max: 104, preferences: false })
    expect(await dataOf(url)).toEqual(before)

    // The configuration: every file as the release snapshot holds it.
    for (const file of service.config.configFiles) {
      const copy = path.join(release.dir, configEntryPath(file))
      expect(existsSync(copy)).toBe(true)
      expect({ file, text: readFileSync(file, 'utf8') }).toEqual({ file, text: readFileSync(copy, 'utf8') })
    }
    expect(readFileSync(path.join(state.dir, 'compose/green/.env'), 'utf8')).toBe(
      'IMAGE_TAG=v2.4.9\nLOG_LEVEL=info\n'
    )
    expect(JSON.parse(readFileSync(path.join(state.dir, 'config/app.json'), 'utf8'))).toEqual({
      featureFlags: { newLobby: false }
    })
    expect(record.steps.find(s => s.name === 'Restore configuration')?.detail).toMatch(/restored .*app\.json/)

    // The previous version runs, healthy, from the image the backup recorded; green is gone; nginx serves blue.
    const blue = await containersOf('spacetime-blue')
    expect(blue).toHaveLength(1)
    const inspected = await engine!.docker.getContainer(blue[0]!.id).inspect()
    expect(inspected.State.Running).toBe(true)
    expect(inspected.State.Health?.Status).toBe('healthy')
    expect(inspected.Image).toBe(state.images.blue.id)
    if (recorded) {
      expect(inspected.Image).toBe(recorded)
      expect(inspected.Config.Image).toBe(recorded)
      expect(record.steps.find(s => s.name === 'Deploy previous version')?.detail).toContain(
        `pinned app to ${recorded}`
      )
    } else expect(inspected.Config.Image).toBe('spacetime:v2.4.9')
    expect(await containersOf('spacetime-green')).toEqual([])
    expect(new Set(await whoServes(`http://127.0.0.1:${state.nginxPort}`, 30))).toEqual(new Set(['blue']))
    expect(record.steps.find(s => s.name === 'Wait for health')?.detail).toMatch(
      /Docker healthcheck: healthy/
    )
    expect(await sandboxNginxTest(state.dir)).toBe(true)
  })

  test('Level 2 on compose pins the image ID images.txt records, even after the tag moved to another image', async () => {
    const { state, service, url } = await up('level2-pin')
    const release = service.store.list().find(b => b.manifest.kind === 'snapshot')
    if (!release) throw new Error('sandbox up took no release snapshot')
    // images.txt as the compose snapshot records it (the change proposed for snapshot.ts): per colour, the
    // application service, its image reference and the image ID (or registry digest) to pin. The manifest is
    // updated to match, so the backup stays intact.
    const { blue, green } = state.images
    writeFileSync(
      path.join(release.dir, 'images.txt'),
      `spacetime-blue:v2.4.9 app ${blue.tag} ${blue.id}\nspacetime-green:v2.5.0 app ${blue.tag} ${blue.id}\n`
    )
    const manifestFile = path.join(release.dir, 'manifest.json')
    const manifest = JSON.parse(readFileSync(manifestFile, 'utf8')) as {
      files: { path: string; size: number; sha256: string }[]
    }
    const entry = manifest.files.find(f => f.path === 'images.txt')!
    entry.size = statSync(path.join(release.dir, 'images.txt')).size
    entry.sha256 = await sha256File(path.join(release.dir, 'images.txt'))
    writeFileSync(manifestFile, JSON.stringify(manifest, null, 2) + '\n')
    // An edited manifest matches its seal again once the operator accepts it (`backout seal`).
    await service.store.seal(release.id)
    expect(await service.store.verify(release.id)).toEqual([])
    expect(recordedImage(service.store.get(release.id), service.config, 'blue')).toBe(blue.id)

    // The mutable tag moves (a re-push of v2.4.9), and blue is down: only the pin brings back the exact image.
    await engine!.docker.getImage(green.id).tag({ repo: 'spacetime', tag: 'v2.4.9' })
    await service.runtime.stop('blue', 10_000)
    const { record, error } = await rollback(service, {
      level: 2,
      reason: 'migration 105 broke the lobby',
      dryRun: false,
      confirm: () => Promise.resolve(true)
    })
    console.log(timelineText(record))
    expect(error).toBeUndefined()
    timings.push(
      `level2-pin: Level 2 ${((record.durationMs ?? 0) / 1000).toFixed(2)}s — ${stepTimes(record)}`
    )
    expect(record.steps.find(s => s.name === 'Preparation')?.detail).toContain(
      `image to pin for blue: ${blue.id}`
    )
    expect(record.steps.find(s => s.name === 'Deploy previous version')?.detail).toContain(
      `pinned app to ${blue.id}`
    )
    const containers = await containersOf('spacetime-blue')
    expect(containers).toHaveLength(1)
    const inspected = await engine!.docker.getContainer(containers[0]!.id).inspect()
    expect(inspected.Image).toBe(blue.id)
    expect(inspected.Config.Image).toBe(blue.id)
    expect((await engine!.docker.getImage('spacetime:v2.4.9').inspect()).Id).toBe(green.id)
    expect(new Set(await whoServes(`http://127.0.0.1:${state.nginxPort}`, 20))).toEqual(new Set(['blue']))
    expect(await schemaOf(url)).toEqual({ max: 104, preferences: false })
  })
})
