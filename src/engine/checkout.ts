import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import type { Color, Config } from '../core/config'
import type { BackupInfo } from '../drivers/backup-store'
import type { Runtime } from '../drivers/runtime'
import type { SystemdRuntime } from '../drivers/systemd'

/**
 * systemd: the git commit a backup recorded for a colour's checkout, and the pre-flight check that it can be
 * checked out again — shared by Level 2 (which refuses without one) and Level 3 (which only warns).
 */

/** The systemd runtime's own calls (git checkout, journal), when the service runs on systemd. */
export function asSystemd(runtime: Runtime): SystemdRuntime | undefined {
  return runtime.kind === 'systemd' && 'checkout' in runtime ? (runtime as SystemdRuntime) : undefined
}

/** A full git commit hash (SHA-1 or SHA-256 repositories). */
const COMMIT = /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/

/**
 * What a backup's images.txt recorded for a colour: of the lines `<service>-<colour>:<version> …rest`, the value
 * `pick(rest)` finds; a line whose first field is `preferred` (the target's unit or compose service) wins over one
 * naming another. Undefined when nothing was recorded.
 */
export function recordedFor(
  backup: BackupInfo,
  config: Config,
  color: Color,
  preferred: string | undefined,
  pick: (rest: string[]) => string | undefined
): string | undefined {
  const file = path.join(backup.dir, 'images.txt')
  if (!existsSync(file)) return undefined
  let found: string | undefined
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const [name, ...rest] = line.trim().split(/\s+/)
    if (!name?.startsWith(`${config.service}-${color}:`)) continue
    const value = pick(rest)
    if (!value) continue
    if (rest[0] === preferred) return value
    found ??= value
  }
  return found
}

/**
 * systemd: the commit a backup recorded in images.txt for a colour's checkout, or undefined when it recorded none.
 * A line is `<service>-<colour>:<version> <unit> <gitDir> <commit>` (the systemd runtime's images()).
 */
export function recordedCommit(backup: BackupInfo, config: Config, color: Color): string | undefined {
  return recordedFor(backup, config, color, config.targets[color].systemd?.unit, rest =>
    rest.length === 3 && rest[2] && COMMIT.test(rest[2]) ? rest[2] : undefined
  )
}

/** A checkout verified in pre-flight: the colour's git dir, the commit it is on now, the commit to check out. */
export interface PlannedCheckout {
  dir: string
  from: string
  to: string
}

/**
 * What the pre-flight check found for a colour's checkout: a commit that can be checked out, or nothing to check
 * out (`why`, with the remedy: the backup recorded no commit, or targets.<colour>.systemd.gitDir is not set).
 */
export type CheckoutPlan = ({ kind: 'checkout' } & PlannedCheckout) | { kind: 'none'; why: string }

/**
 * The pre-flight check of the commit `backup` recorded for `color`'s checkout, changing nothing (the unit may
 * still run). A recorded commit the checkout cannot move to — uncommitted changes in the work tree, a commit the
 * repository lacks — is the driver's UserError (exit 2), whatever the caller does with `none`.
 */
export async function planCheckout(
  systemd: SystemdRuntime,
  backup: BackupInfo,
  config: Config,
  color: Color,
  level: 'Level 2' | 'Level 3'
): Promise<CheckoutPlan> {
  const unit = config.targets[color].systemd?.unit ?? `targets.${color}.systemd.unit`
  const dir = config.targets[color].systemd?.gitDir
  const commit = recordedCommit(backup, config, color)
  if (!commit || !dir)
    return {
      kind: 'none',
      why:
        `backup ${backup.id} records no git commit for ${color} (${unit}) in images.txt, so ${level} cannot tell which ` +
        `code to check out — ` +
        (dir
          ? 'pick a backup taken while targets.' + color + '.systemd.gitDir was set (--target; backout list)'
          : `set targets.${color}.systemd.gitDir to the checkout ${unit} runs from, take a snapshot of a good state, and roll back to it`) +
        ', or check out the previous commit by hand'
    }
  const verified = await systemd.verifyCheckout(color, commit)
  return { kind: 'checkout', dir, ...verified }
}

/** A commit as the step details show it. */
export const shortCommit = (commit: string): string => commit.slice(0, 12)
