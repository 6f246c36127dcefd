import { createHash } from 'node:crypto'
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync
} from 'node:fs'
import path from 'node:path'
import { runCommand, type CommandResult } from '../../src/drivers/exec'
import { sleep } from '../../src/drivers/sleep'
import { hasDocker, noDockerReason, type DockerEngine } from './docker-engine'

/**
 * A real systemd for tests, on a machine whose PID 1 is not systemd: a Debian rootfs built with debootstrap
 * (systemd, git, python3), imported into the private Docker Engine and booted with /sbin/init as the
 * container's PID 1. Only Debian's mirror is needed — no registry image.
 *
 * The rootfs tarball is cached under /var/cache/backout (BACKOUT_CACHE_DIR to change it) and reused; a
 * fresh machine builds it once (47–72 s here: debootstrap, a 224 MB tarball).
 *
 * The container: CAP_SYS_ADMIN, no seccomp filter, its own cgroup namespace, tmpfs /run and /run/lock.
 * Not --privileged: it asks for every capability, and a sandbox without CAP_SYS_RESOURCE (this one) refuses
 * it. Docker mounts the cgroup tree read-only without --privileged; /usr/local/sbin/backout-init remounts
 * the part systemd writes (name=systemd on a cgroup v1 host, the unified tree on v2) read-write, then
 * execs systemd.
 *
 * Inside: two units, vbrpg-backend-blue.service and vbrpg-backend-green.service, each python3's http.server
 * on its own git checkout (/srv/vbrpg-blue, /srv/vbrpg-green) whose two commits, tagged v1 and v2, serve
 * {"status":"healthy","version":"v1"|"v2"} at /health; both checkouts are at v2. Plus two for failure
 * paths: vbrpg-stubborn.service ignores SIGTERM, vbrpg-broken.service exits 3 right after it starts.
 */

const SUITE = 'bookworm'
const PACKAGES = ['systemd', 'systemd-sysv', 'dbus', 'git', 'python3', 'ca-certificates']
/** Bump when the rootfs recipe changes: the cache key covers it. */
const RECIPE = 1

/** Runs as the container's entrypoint: make systemd's cgroup tree writable, then become systemd. */
const INIT_SCRIPT = `#!/bin/sh
# backout test image: Docker mounts /sys/fs/cgroup read-only without --privileged; systemd must write.
if [ -d /sys/fs/cgroup/systemd ]; then
  mount -o remount,bind,rw /sys/fs/cgroup/systemd
elif [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  mount -o remount,bind,rw /sys/fs/cgroup
fi
exec /sbin/init "$@"
`

export const PORTS = { blue: 8001, green: 8002 } as const

const DOCKER_CLI = ['/usr/bin/docker', '/usr/local/bin/docker'].find(p => existsSync(p))
const DEBOOTSTRAP = ['/usr/sbin/debootstrap', '/usr/bin/debootstrap'].find(p => existsSync(p))

export const cacheDir = process.env.BACKOUT_CACHE_DIR ?? '/var/cache/backout'
const cacheKey = createHash('sha256')
  .update(JSON.stringify({ SUITE, PACKAGES, RECIPE, INIT_SCRIPT }))
  .digest('hex')
  .slice(0, 12)
export const imageTarball = path.join(cacheDir, `systemd-${SUITE}-${cacheKey}.tar`)
const imageTag = `backout-systemd:${cacheKey}`

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0

/** Empty when a systemd container can be had here, else why not. */
export const noSystemdReason = !hasDocker
  ? noDockerReason
  : !DOCKER_CLI
    ? 'the docker CLI is not installed (apt-get install docker.io)'
    : existsSync(imageTarball)
      ? ''
      : !DEBOOTSTRAP
        ? `no cached systemd rootfs (${imageTarball}) and debootstrap is not installed (apt-get install debootstrap)`
        : !isRoot
          ? `no cached systemd rootfs (${imageTarball}) and building one with debootstrap needs root`
          : ''
export const hasSystemdContainer = noSystemdReason === ''

async function checked(
  argv: string[],
  options: Parameters<typeof runCommand>[1] = {}
): Promise<CommandResult> {
  const r = await runCommand(argv, options)
  if (r.code !== 0)
    throw new Error(
      `${argv.join(' ')} exited ${r.code}: ${(r.stderr || r.stdout).trim().split('\n').slice(-15).join('\n')}`
    )
  return r
}

/** The mirror apt uses here (deb822 .sources or a one-line sources.list), else deb.debian.org. */
export function debianMirror(): string {
  if (process.env.BACKOUT_DEBIAN_MIRROR) return process.env.BACKOUT_DEBIAN_MIRROR
  const files = ['/etc/apt/sources.list.d/debian.sources', '/etc/apt/sources.list']
  for (const file of files) {
    if (!existsSync(file)) continue
    const text = readFileSync(file, 'utf8')
    for (const m of text.matchAll(/^URIs:\s*(\S+)/gm)) if (m[1] && !/security/.test(m[1])) return m[1]
    for (const m of text.matchAll(/^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/gm))
      if (m[1] && m[2] && !/security/.test(m[1]) && !m[2].includes('-')) return m[1]
  }
  return 'http://deb.debian.org/debian'
}

/**
 * Builds the rootfs tarball into the cache (debootstrap, then the init script, then tar). Written to a
 * temporary name and renamed, so an interrupted build never leaves a tarball that looks complete.
 */
export async function buildRootfsTarball(log: (line: string) => void = () => undefined): Promise<number> {
  if (!DEBOOTSTRAP) throw new Error(noSystemdReason)
  const started = Date.now()
  mkdirSync(cacheDir, { recursive: true })
  const work = mkdtempSync(path.join(cacheDir, 'build-'))
  const rootfs = path.join(work, 'rootfs')
  try {
    const mirror = debianMirror()
    log(`building the systemd rootfs: debootstrap ${SUITE} from ${mirror} (about a minute)`)
    await checked(
      [DEBOOTSTRAP, '--variant=minbase', `--include=${PACKAGES.join(',')}`, SUITE, rootfs, mirror],
      { timeoutMs: 15 * 60000 }
    )
    writeFileSync(path.join(rootfs, 'usr/local/sbin/backout-init'), INIT_SCRIPT, { mode: 0o755 })
    // Nothing in the tests needs these; the tarball is smaller without them.
    for (const dir of [
      'usr/share/doc',
      'usr/share/man',
      'usr/share/locale',
      'var/cache/apt',
      'var/lib/apt/lists'
    ])
      rmSync(path.join(rootfs, dir), { recursive: true, force: true })
    const partial = `${imageTarball}.partial`
    await checked(['tar', '--numeric-owner', '-C', rootfs, '-cf', partial, '.'], { timeoutMs: 5 * 60000 })
    renameSync(partial, imageTarball)
    const ms = Date.now() - started
    log(
      `built ${imageTarball} (${Math.round(statSync(imageTarball).size / 1e6)} MB) in ${(ms / 1000).toFixed(0)}s`
    )
    return ms
  } finally {
    rmSync(work, { recursive: true, force: true })
  }
}

export interface SystemdContainer {
  name: string
  /** The argv prefix that runs a command in the container: [docker, -H, unix://…, exec, name]. */
  exec: string[]
  /** Runs a command in the container. */
  run(argv: string[], input?: string): Promise<CommandResult>
  /** Host ports published for the blue and green units' HTTP ports. */
  hostPorts: { blue: number; green: number }
  timings: { buildMs?: number; importMs: number; bootMs: number; setupMs: number }
  stop(): Promise<void>
}

async function writeIn(exec: string[], file: string, content: string): Promise<void> {
  await checked([...exec.slice(0, -1), '-i', ...exec.slice(-1), 'tee', file], { input: content })
}

function unit(description: string, execStart: string, extra: string[] = []): string {
  return [
    '[Unit]',
    `Description=${description}`,
    '',
    '[Service]',
    `ExecStart=${execStart}`,
    ...extra,
    ''
  ].join('\n')
}

export interface SystemdContainerOptions {
  /**
   * More files for each release commit of the checkouts, by path relative to the checkout (e.g. a `status` file
   * for backout's readiness probe): committed with `health` and `VERSION` in v1 and in v2.
   */
  files?: (version: 'v1' | 'v2') => Record<string, string>
}

/**
 * Builds (or loads from the cache) the image, boots systemd in a container on `engine`, and installs the
 * units and checkouts. The engine's stop() removes the container too; stop() here removes it at once.
 */
export async function startSystemdContainer(
  engine: DockerEngine,
  hostPorts: { blue: number; green: number },
  log: (line: string) => void = () => undefined,
  options: SystemdContainerOptions = {}
): Promise<SystemdContainer> {
  if (!DOCKER_CLI) throw new Error(noSystemdReason)
  const docker = [DOCKER_CLI, '-H', `unix://${engine.socket}`]
  const timings: SystemdContainer['timings'] = { importMs: 0, bootMs: 0, setupMs: 0 }

  if (!existsSync(imageTarball)) timings.buildMs = await buildRootfsTarball(log)
  let t = Date.now()
  await checked(
    [...docker, 'import', '--change', 'ENTRYPOINT ["/usr/local/sbin/backout-init"]', imageTarball, imageTag],
    {
      timeoutMs: 5 * 60000
    }
  )
  timings.importMs = Date.now() - t

  const name = `backout-systemd-${process.pid}-${Date.now().toString(36)}`
  const network = `${name}-net`
  await checked([...docker, 'network', 'create', '--label', 'org.backout.test=systemd', network])
  t = Date.now()
  await checked([
    ...docker,
    'run',
    '--detach',
    '--name',
    name,
    '--label',
    'org.backout.test=systemd',
    '--cap-add',
    'SYS_ADMIN',
    '--security-opt',
    'seccomp=unconfined',
    '--cgroupns',
    'private',
    '--tmpfs',
    '/run:exec',
    '--tmpfs',
    '/run/lock',
    '--env',
    'container=docker',
    '--stop-signal',
    'SIGRTMIN+3',
    '--network',
    network,
    '--publish',
    `127.0.0.1:${hostPorts.blue}:${PORTS.blue}`,
    '--publish',
    `127.0.0.1:${hostPorts.green}:${PORTS.green}`,
    imageTag
  ])
  const exec = [...docker, 'exec', name]
  const stop = async (): Promise<void> => {
    await runCommand([...docker, 'rm', '--force', '--volumes', name], { timeoutMs: 60000 }).catch(
      () => undefined
    )
    await runCommand([...docker, 'network', 'rm', network], { timeoutMs: 30000 }).catch(() => undefined)
  }

  try {
    // Until systemd answers on its bus, is-system-running fails; --wait then blocks until boot is done.
    const deadline = Date.now() + 60000
    for (;;) {
      const r = await runCommand([...exec, 'systemctl', 'is-system-running', '--wait'], { timeoutMs: 60000 })
      const state = r.stdout.trim()
      if (state === 'running' || state === 'degraded') break
      if (Date.now() > deadline) {
        const logs = await runCommand([...docker, 'logs', '--tail', '30', name])
        throw new Error(
          `systemd did not boot within 60 s (state "${state}" ${r.stderr.trim()}):\n${logs.stdout}${logs.stderr}`
        )
      }
      await sleep(100)
    }
    timings.bootMs = Date.now() - t

    t = Date.now()
    for (const color of ['blue', 'green'] as const) {
      await writeIn(
        exec,
        `/etc/systemd/system/vbrpg-backend-${color}.service`,
        unit(
          `VBRPG backend (${color})`,
          `/usr/bin/python3 -u -m http.server ${PORTS[color]} --directory /srv/vbrpg-${color}`,
          ['TimeoutStopSec=20']
        )
      )
    }
    await writeIn(
      exec,
      '/etc/systemd/system/vbrpg-stubborn.service',
      unit(
        'ignores SIGTERM',
        `/usr/bin/python3 -u -c "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ignoring SIGTERM'); time.sleep(3600)"`,
        ['TimeoutStopSec=120']
      )
    )
    await writeIn(
      exec,
      '/etc/systemd/system/vbrpg-broken.service',
      unit(
        'exits at once',
        `/usr/bin/python3 -u -c "import sys, time; time.sleep(0.2); print('boom: cannot open data/vbrpg.db'); sys.exit(3)"`
      )
    )

    const git = (...args: string[]): Promise<CommandResult> =>
      checked([
        ...exec,
        'git',
        '-c',
        'user.name=backout test',
        '-c',
        'user.email=test@backout.invalid',
        ...args
      ])
    const repo = '/srv/vbrpg-blue'
    await checked([...exec, 'mkdir', '-p', repo])
    await git('-C', repo, 'init', '--quiet', '--initial-branch=main')
    for (const version of ['v1', 'v2'] as const) {
      await writeIn(exec, `${repo}/health`, JSON.stringify({ status: 'healthy', version }) + '\n')
      await writeIn(exec, `${repo}/VERSION`, `${version}\n`)
      for (const [file, content] of Object.entries(options.files?.(version) ?? {})) {
        if (path.isAbsolute(file) || file.split('/').includes('..'))
          throw new Error(`startSystemdContainer: files: ${file} is not a path inside the checkout`)
        await writeIn(exec, `${repo}/${file}`, content)
      }
      await git('-C', repo, 'add', '--all')
      await git('-C', repo, 'commit', '--quiet', '-m', `release ${version}`)
      await git('-C', repo, 'tag', version)
    }
    await git('clone', '--quiet', repo, '/srv/vbrpg-green')
    await checked([...exec, 'systemctl', 'daemon-reload'])
    timings.setupMs = Date.now() - t
  } catch (e) {
    await stop()
    throw e
  }

  return {
    name,
    exec,
    run: (argv, input) =>
      runCommand([...(input === undefined ? exec : [...docker, 'exec', '-i', name]), ...argv], {
        input,
        timeoutMs: 60000
      }),
    hostPorts,
    timings,
    stop
  }
}
