import { existsSync, readFileSync, renameSync, writeFileSync, copyFileSync, rmSync } from 'node:fs'
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
    }
  }
}
