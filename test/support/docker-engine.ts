import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import Dockerode from 'dockerode'
import { buildAppImages as buildImages, type AppImage } from '../../src/sandbox/app-images'

/**
 * A private Docker Engine for tests: dockerd with its own data root, exec root and socket in a temp dir, so
 * it never meets another daemon on this machine. It leaves the host's network alone: no docker0 bridge
 * (--bridge=none), no iptables rules, no ip_forward or masquerading. Compose projects get their own bridge
 * networks, and published ports (127.0.0.1:PORT) go through docker-proxy, which needs none of that.
 */

const DOCKERD = ['/usr/sbin/dockerd', '/usr/bin/dockerd'].find(p => existsSync(p))
const BUSYBOX = ['/bin/busybox', '/usr/bin/busybox'].find(p => existsSync(p))

/** Whether a Docker Engine and a static busybox (for the images) are installed. */
export const hasDocker = DOCKERD !== undefined && BUSYBOX !== undefined && isStatic(BUSYBOX)
export const noDockerReason = !DOCKERD
  ? 'dockerd is not installed (apt-get install docker.io)'
  : !BUSYBOX || !isStatic(BUSYBOX)
    ? 'a static busybox is not installed (apt-get install busybox-static)'
    : ''

function isStatic(file: string): boolean {
  const r = spawnSync('ldd', [file], { encoding: 'utf8' })
  if (r.error) return true // no ldd: assume busybox-static
  return /not a dynamic executable|statically linked/.test(`${r.stdout}${r.stderr}`)
}

export interface DockerEngine {
  root: string
  socket: string
  docker: Dockerode
  /** process.env with DOCKER_HOST pointing at this engine. */
  env: NodeJS.ProcessEnv
  logFile: string
  /** Removes every container and network, stops dockerd (SIGTERM, wait; SIGKILL after 20 s), deletes root. */
  stop(): Promise<void>
}

const sleep = (ms: number): Promise<void> => new Promise(r => setTimeout(r, ms))

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise(resolve => child.once('exit', () => resolve()))
}

export async function startDockerEngine(): Promise<DockerEngine> {
  if (!DOCKERD) throw new Error(noDockerReason)
  // Short: the socket path must stay under 108 bytes, containerd's sockets live under exec-root.
  const root = mkdtempSync(path.join(tmpdir(), 'backout-dk-'))
  const socket = path.join(root, 'docker.sock')
  const logFile = path.join(root, 'dockerd.log')
  const fd = openSync(logFile, 'a')
  const child = spawn(
    DOCKERD,
    [
      '--data-root',
      path.join(root, 'docker'),
      '--exec-root',
      path.join(root, 'exec'),
      '--pidfile',
      path.join(root, 'docker.pid'),
      '--host',
      `unix://${socket}`,
      '--bridge=none',
      '--iptables=false',
      '--ip-forward=false',
      '--ip-masq=false',
      '--shutdown-timeout',
      '5'
    ],
    { stdio: ['ignore', fd, fd] }
  )
  closeSync(fd)
  const docker = new Dockerode({ socketPath: socket })
  const env = { ...process.env, DOCKER_HOST: `unix://${socket}` }

  let stopped = false
  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    try {
      const containers = await docker.listContainers({ all: true })
      await Promise.all(
        containers.map(c =>
          docker
            .getContainer(c.Id)
            .remove({ force: true })
            .catch(() => undefined)
        )
      )
      await docker.pruneNetworks().catch(() => undefined)
    } catch {
      // the daemon is gone already
    }
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      child.kill('SIGTERM')
      let timer: NodeJS.Timeout | undefined
      const done = await Promise.race([
        exited(child).then(() => true),
        new Promise<boolean>(resolve => (timer = setTimeout(() => resolve(false), 20000)))
      ])
      clearTimeout(timer)
      if (!done) {
        child.kill('SIGKILL')
        await exited(child)
      }
    }
    rmSync(root, { recursive: true, force: true })
  }

  const deadline = Date.now() + 30000
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const log = readFileSync(logFile, 'utf8').trim().split('\n').slice(-15).join('\n')
      rmSync(root, { recursive: true, force: true })
      throw new Error(`dockerd exited (${child.exitCode ?? child.signalCode}) before it answered:\n${log}`)
    }
    if (existsSync(socket)) {
      try {
        await docker.ping()
        break
      } catch {
        // not ready yet
      }
    }
    if (Date.now() > deadline) {
      await stop()
      throw new Error('dockerd did not answer within 30 s')
    }
    await sleep(50)
  }
  return { root, socket, docker, env, logFile, stop }
}

export type { AppImage } from '../../src/sandbox/app-images'
export { APP_VERSIONS } from '../../src/sandbox/app-images'

/**
 * Builds spacetime:v2.4.9 (environment blue) and spacetime:v2.5.0 (green) on the engine, as the product's
 * compose sandbox does (src/sandbox/app-images.ts).
 */
export function buildAppImages(engine: DockerEngine): Promise<{ blue: AppImage; green: AppImage }> {
  if (!BUSYBOX) throw new Error(noDockerReason)
  return buildImages(engine.docker, { workDir: engine.root, labels: { 'org.backout.test': 'app' } })
}
