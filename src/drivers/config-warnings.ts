import { existsSync } from 'node:fs'
import path from 'node:path'
import type { Config } from '../core/config'

/** The git work tree holding `p` (the nearest ancestor with a .git), or undefined. `p` need not exist yet. */
export function gitWorkTreeOf(p: string): string | undefined {
  let dir = path.resolve(p)
  for (;;) {
    if (existsSync(path.join(dir, '.git'))) return dir
    const up = path.dirname(dir)
    if (up === dir) return undefined
    dir = up
  }
}

/**
 * What a valid config still gets wrong for a host: state (locks, run records, the seal key), the history
 * log and the backups inside a git checkout, where `actions/checkout` (git clean -ffdx) or a fresh clone
 * wipes them. Each warning names the key, the path and what to do.
 */
export function configWarnings(config: Config): string[] {
  const keys: [string, string][] = [
    ['state.dir', config.state.dir],
    ['history.log', config.history.log],
    ['backups.dir', config.backups.dir]
  ]
  const base = `/var/lib/backout/${config.service}`
  const suggestion: Record<string, string> = {
    'state.dir': base,
    'history.log': `${base}/rollback_history.log`,
    'backups.dir': `/var/backups/${config.service}`
  }
  const warnings: string[] = []
  for (const [key, p] of keys) {
    const tree = gitWorkTreeOf(p)
    if (tree)
      warnings.push(
        `${key} ${p} is inside the git work tree ${tree}: a checkout (actions/checkout cleans it) or a fresh ` +
          `clone loses it — set ${key} to an absolute path outside it, e.g. ${suggestion[key]}`
      )
  }
  return warnings
}
