import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  copyFileSync,
  chmodSync
} from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import Dockerode from 'dockerode'

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

export interface AppImage {
  tag: string
  id: string
  environment: string
  version: string
}

/** What the app answers on /health and /status, per colour. */
export const APP_VERSIONS = { blue: 'v2.4.9', green: 'v2.5.0' } as const

/**
 * Builds spacetime:v2.4.9 (environment blue) and spacetime:v2.5.0 (green): FROM scratch, a static busybox
 * with its applets, and busybox httpd serving /www, whose static /health and /status files differ.
 */
export async function buildAppImages(engine: DockerEngine): Promise<{ blue: AppImage; green: AppImage }> {
  if (!BUSYBOX) throw new Error(noDockerReason)
  const ctx = mkdtempSync(path.join(engine.root, 'ctx-'))
  const rootfs = path.join(ctx, 'rootfs')
  for (const dir of ['bin', 'www', 'tmp']) mkdirSync(path.join(rootfs, dir), { recursive: true })
  chmodSync(path.join(rootfs, 'tmp'), 0o1777)
  copyFileSync(BUSYBOX, path.join(rootfs, 'bin/busybox'))
  chmodSync(path.join(rootfs, 'bin/busybox'), 0o755)
  const applets = spawnSync(BUSYBOX, ['--list'], { encoding: 'utf8' }).stdout.split('\n')
  for (const applet of applets.map(a => a.trim()).filter(a => a && a !== 'busybox'))
    symlinkSync('busybox', path.join(rootfs, 'bin', applet))
  writeFileSync(
    path.join(ctx, 'Dockerfile'),
    [
      'FROM scratch',
      'ADD rootfs /',
      'EXPOSE 80',
      'CMD ["/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www"]',
      ''
    ].join('\n')
  )
  const build = async (color: 'blue' | 'green'): Promise<AppImage> => {
    const version = APP_VERSIONS[color]
    writeFileSync(
      path.join(rootfs, 'www/health'),
      JSON.stringify({ status: 'ok', environment: color, version }) + '\n'
    )
    writeFileSync(
      path.join(rootfs, 'www/status'),
      JSON.stringify({ overall_ready: true, environment: color, version, checks: { http: 'ok' } }) + '\n'
    )
    const tag = `spacetime:${version}`
    const tar = spawn('tar', ['-c', '-C', ctx, '.'], { stdio: ['ignore', 'pipe', 'inherit'] })
    const tarDone = new Promise<number | null>(resolve => tar.once('close', code => resolve(code)))
    const stream = await engine.docker.buildImage(tar.stdout, {
      t: tag,
      labels: { 'org.backout.test': 'app' }
    })
    const output = await new Promise<{ error?: string }[]>((resolve, reject) =>
      engine.docker.modem.followProgress(stream, (err: Error | null, res: { error?: string }[]) =>
        err ? reject(err) : resolve(res)
      )
    )
    if ((await tarDone) !== 0) throw new Error(`tar of the build context ${ctx} failed`)
    const failed = output.find(o => o.error)
    if (failed) throw new Error(`building ${tag} failed: ${failed.error}`)
    const image = await engine.docker.getImage(tag).inspect()
    return { tag, id: image.Id, environment: color, version }
  }
  const blue = await build('blue')
  const green = await build('green')
  rmSync(ctx, { recursive: true, force: true })
  return { blue, green }
}
