import net from 'node:net'
import type { Color, Config } from '../core/config'
import { messageOf } from '../core/errors'
import { formatBytes, freeSpace } from '../drivers/archive'
import { dockerFor, type ComposeRuntime } from '../drivers/compose'
import type { Service } from './service'
import { retentionPlan } from './snapshot'

/** The probes assess, validate and the emergency procedures share: ports, target state, Docker, disk. */

/** Resolves to the work's value, or to onTimeout() when the deadline passes first. */
export async function withDeadline<T>(work: Promise<T>, ms: number, onTimeout: () => T): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<T>(resolve => {
    timer = setTimeout(() => resolve(onTimeout()), ms)
  })
  try {
    return await Promise.race([work, late])
  } finally {
    clearTimeout(timer)
  }
}

/** Whether something accepts TCP connections on host:port (connect, then close). */
export function listening(hostPort: string, timeoutMs = 1000): Promise<boolean> {
  const at = hostPort.lastIndexOf(':')
  const host = hostPort.slice(0, at).replace(/^\[|\]$/g, '')
  const port = Number(hostPort.slice(at + 1))
  return new Promise(resolve => {
    const socket = net.connect({ host, port })
    const done = (ok: boolean): void => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(timeoutMs, () => done(false))
    socket.once('connect', () => done(true))
    socket.once('error', () => done(false))
  })
}

/** The host:port nginx serves on, from nginx.url. */
export function nginxAddress(config: Config): string {
  const url = new URL(config.nginx.url)
  return `${url.hostname}:${url.port || (url.protocol === 'https:' ? '443' : '80')}`
}

/** Every port backout knows of, by what it is: nginx and both targets' upstreams. */
export function knownPorts(config: Config): { name: string; address: string }[] {
  return [
    { name: 'nginx', address: nginxAddress(config) },
    { name: 'blue', address: config.targets.blue.upstream },
    { name: 'green', address: config.targets.green.upstream }
  ]
}

/** One target's runtime state: process (PID) or compose (every container running and healthy). */
export async function targetState(
  service: Service,
  color: Color
): Promise<{ running: boolean; healthy: boolean; detail: string }> {
  const { runtime } = service
  if (runtime.kind === 'compose' && 'containersJson' in runtime) {
    const containers = await (runtime as ComposeRuntime).containersJson(color)
    if (!containers.length) return { running: false, healthy: false, detail: 'no containers' }
    const running = containers.every(c => c.state === 'running')
    const healthy = running && containers.every(c => c.health === 'healthy' || c.health === 'none')
    const detail = containers.map(c => `${c.name} ${c.state}${c.health !== 'none' ? ` (${c.health})` : ''}`)
    return { running, healthy, detail: detail.join(', ') }
  }
  const state = await runtime.state(color)
  return { running: state.running, healthy: state.running, detail: state.detail }
}

/** Whether the Docker daemon answers a ping; only meaningful for the compose runtime. */
export async function dockerDaemon(): Promise<{ ok: boolean; detail: string }> {
  try {
    await dockerFor(process.env).ping()
    return { ok: true, detail: 'answers' }
  } catch (e) {
    return {
      ok: false,
      detail: `not answering (${messageOf(e)}) — systemctl status docker; sudo systemctl restart docker`
    }
  }
}

/** Free disk under backups.dir, and what may be pruned when it runs short. */
export async function diskSpace(
  service: Service
): Promise<{ freeBytes: number; low: boolean; prunable: string[]; detail: string }> {
  const { config } = service
  const { freeBytes } = await freeSpace(config.backups.dir)
  const low = freeBytes < config.assess.minFreeDiskMB * 1024 * 1024
  let prunable: string[] = []
  try {
    const plan = retentionPlan(service)
    prunable = [...new Set([...plan.deleted, ...plan.prunable])]
  } catch {
    // no backups dir yet: nothing to prune
  }
  const detail =
    `${formatBytes(freeBytes)} free under ${config.backups.dir}` +
    (low
      ? ` (below ${config.assess.minFreeDiskMB} MB) — may be pruned: ` +
        (prunable.length
          ? `old backups beyond retention ${prunable.join(', ')} (rm -r ${config.backups.dir}/<id>)`
          : 'no backup (only the protected ones are left)') +
        (config.runtime === 'compose' ? '; unused Docker data (docker system prune -af)' : '')
      : '')
  return { freeBytes, low, prunable, detail }
}
