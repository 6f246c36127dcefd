import { spawn } from 'node:child_process'
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  symlinkSync,
  writeFileSync
} from 'node:fs'
import path from 'node:path'
import type Dockerode from 'dockerode'
import { UserError } from '../core/errors'
import { runCommand } from '../drivers/exec'

/**
 * The sandbox app as Docker images, built locally — nothing is pulled: spacetime:v2.4.9 (answers as blue) and
 * spacetime:v2.5.0 (green), each FROM scratch with a static busybox and its applets, `busybox httpd` serving
 * /www, whose static /health and /status files tell the versions apart.
 */

/** What each image answers on /health and /status, by colour. */
export const APP_VERSIONS = { blue: 'v2.4.9', green: 'v2.5.0' } as const

export const APP_REPOSITORY = 'spacetime'

export interface AppImage {
  /** spacetime:v2.4.9 */
  tag: string
  /** The image ID (sha256:…). */
  id: string
  environment: 'blue' | 'green'
  version: string
}

const BUSYBOX_CANDIDATES = ['/bin/busybox', '/usr/bin/busybox']

/** A statically linked busybox (it runs FROM scratch), or why there is none. */
export async function findStaticBusybox(): Promise<{ path: string } | { missing: string }> {
  const found = BUSYBOX_CANDIDATES.find(p => existsSync(p))
  if (!found) return { missing: 'busybox is not installed (apt-get install busybox-static)' }
  try {
    const r = await runCommand(['ldd', found], { timeoutMs: 10_000 })
    if (!/not a dynamic executable|statically linked/.test(`${r.stdout}${r.stderr}`))
      return {
        missing: `${found} is linked dynamically, so it cannot run in an image FROM scratch (apt-get install busybox-static)`
      }
  } catch {
    // no ldd: assume busybox-static
  }
  return { path: found }
}

export interface BuildAppImagesOptions {
  /** A scratch directory for the build context; removed afterwards. */
  workDir: string
  /** Extra labels on both images. */
  labels?: Record<string, string>
}

/**
 * Builds spacetime:v2.4.9 and spacetime:v2.5.0 on the Docker Engine `docker` talks to. Without a static busybox,
 * a UserError with the remedy, before anything is built.
 */
export async function buildAppImages(
  docker: Dockerode,
  options: BuildAppImagesOptions
): Promise<{ blue: AppImage; green: AppImage }> {
  const busybox = await findStaticBusybox()
  if ('missing' in busybox)
    throw new UserError(`the sandbox app image needs a static busybox: ${busybox.missing}`, 'busybox_missing')
  mkdirSync(options.workDir, { recursive: true })
  const ctx = mkdtempSync(path.join(options.workDir, 'app-image-'))
  try {
    const rootfs = path.join(ctx, 'rootfs')
    for (const dir of ['bin', 'www', 'tmp']) mkdirSync(path.join(rootfs, dir), { recursive: true })
    chmodSync(path.join(rootfs, 'tmp'), 0o1777)
    copyFileSync(busybox.path, path.join(rootfs, 'bin/busybox'))
    chmodSync(path.join(rootfs, 'bin/busybox'), 0o755)
    const list = await runCommand([busybox.path, '--list'], { timeoutMs: 10_000 })
    for (const applet of list.stdout.split('\n').map(a => a.trim()))
      if (applet && applet !== 'busybox') symlinkSync('busybox', path.join(rootfs, 'bin', applet))
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
      const tag = `${APP_REPOSITORY}:${version}`
      const tar = spawn('tar', ['-c', '-C', ctx, '.'], { stdio: ['ignore', 'pipe', 'pipe'] })
      const tarErr: Buffer[] = []
      tar.stderr.on('data', (b: Buffer) => tarErr.push(b))
      const tarDone = new Promise<number | null>(resolve => tar.once('close', code => resolve(code)))
      const stream = await docker.buildImage(tar.stdout, {
        t: tag,
        labels: { 'org.backout.app': 'spacetime', ...options.labels }
      })
      const output = await new Promise<{ error?: string }[]>((resolve, reject) =>
        docker.modem.followProgress(stream, (err: Error | null, res: { error?: string }[]) =>
          err ? reject(err) : resolve(res)
        )
      )
      if ((await tarDone) !== 0)
        throw new Error(`tar of the build context ${ctx} failed: ${Buffer.concat(tarErr).toString().trim()}`)
      const failed = output.find(o => o.error)
      if (failed) throw new Error(`building ${tag} failed: ${failed.error}`)
      const image = await docker.getImage(tag).inspect()
      return { tag, id: image.Id, environment: color, version }
    }
    const blue = await build('blue')
    const green = await build('green')
    return { blue, green }
  } finally {
    rmSync(ctx, { recursive: true, force: true })
  }
}
