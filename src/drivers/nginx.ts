import {
  existsSync,
  readFileSync,
  readdirSync,
  renameSync,
  writeFileSync,
  copyFileSync,
  rmSync
} from 'node:fs'
import { sleep } from './sleep'
import { runCommand } from './exec'
import { UserError, OperationError } from '../core/errors'
import { renderUpstream, parseUpstream } from '../core/upstream'

/** nginx as backout uses it: one upstream file it rewrites, a config test, a graceful reload. */
export interface Nginx {
  /** The upstream address nginx is configured to send traffic to (from the upstream file). */
  activeUpstream(): string | undefined
  /**
   * Points the upstream at `address`: the new file is written beside the old one, renamed into place,
   * checked with the config test, and only then reloaded; a failed test puts the old file back and
   * reloads nothing, so nginx never sees a bad config.
   */
  switchUpstream(address: string, comment: string): Promise<void>
  /** The current upstream file's text, for snapshots. */
  upstreamText(): string | undefined
}

export interface NginxSettings {
  upstreamFile: string
  upstreamName: string
  test: readonly string[]
  reload: readonly string[]
}

export function createNginx(settings: NginxSettings): Nginx {
  const file = settings.upstreamFile
  return {
    activeUpstream() {
      if (!existsSync(file)) return undefined
      return parseUpstream(readFileSync(file, 'utf8'), settings.upstreamName)
    },
    upstreamText() {
      return existsSync(file) ? readFileSync(file, 'utf8') : undefined
    },
    async switchUpstream(address, comment) {
      const tmp = `${file}.backout-new`
      const previous = `${file}.backout-previous`
      writeFileSync(tmp, renderUpstream(settings.upstreamName, address, comment))
      const hadOld = existsSync(file)
      if (hadOld) copyFileSync(file, previous)
      renameSync(tmp, file)
      const test = await runCommand(settings.test)
      if (test.code !== 0) {
        if (hadOld) renameSync(previous, file)
        else rmSync(file, { force: true })
        throw new UserError(
          `nginx configuration test failed with the new upstream ${address}; the old upstream is back and ` +
            `nothing was reloaded:\n${test.stderr.trim()}\nFix the nginx configuration (${settings.test.join(' ')})`,
          'nginx_config_invalid'
        )
      }
      const before = oldWorkers(settings.reload)
      const reload = await runCommand(settings.reload)
      if (reload.code !== 0) {
        if (hadOld) renameSync(previous, file)
        throw new OperationError(
          `nginx reload failed (${settings.reload.join(' ')}): ${reload.stderr.trim()} — the old upstream file is ` +
            'back; check that nginx is running',
          'nginx_reload_failed'
        )
      }
      rmSync(previous, { force: true })
      // A reload is done when the old workers stop accepting connections (they finish what they hold).
      await waitForShutdown(before)
    }
  }
}

function cmdline(pid: string): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ').trim()
  } catch {
    return ''
  }
}

function parentOf(pid: string): string {
  try {
    return /^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? ''
  } catch {
    return ''
  }
}

/**
 * The worker PIDs of the nginx master this reload command talks to (matched by its -c config path, or the
 * only master there is). Empty where /proc is not readable: then the reload is trusted as it returns.
 */
function oldWorkers(reload: readonly string[]): string[] {
  let pids: string[]
  try {
    pids = readdirSync('/proc').filter(p => /^\d+$/.test(p))
  } catch {
    return []
  }
  const conf = reload[reload.indexOf('-c') + 1]
  const masters = pids.filter(p => cmdline(p).startsWith('nginx: master process'))
  const mine = reload.includes('-c') && conf ? masters.filter(p => cmdline(p).includes(conf)) : masters
  if (mine.length !== 1) return []
  return pids.filter(p => parentOf(p) === mine[0] && cmdline(p) === 'nginx: worker process')
}

/** Waits (up to 5 s) until each old worker has exited or is shutting down, so new connections reach new workers. */
async function waitForShutdown(workers: readonly string[]): Promise<void> {
  const deadline = Date.now() + 5000
  while (Date.now() < deadline && workers.some(p => cmdline(p) === 'nginx: worker process')) await sleep(10)
}
