import { appendFileSync, existsSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs'
import { userInfo } from 'node:os'
import path from 'node:path'
import type { Config } from '../core/config'
import { UserError } from '../core/errors'
import type { BackupInfo } from '../drivers/backup-store'
import type { Service } from './service'

/**
 * The security hold (backout emergency security) and the breach record it leaves behind. The record outlives the
 * hold: backups taken at or after the breach time are never a recovery point chosen by default.
 */

/**
 * The hold file. Its name is also checked at the top of runOperation (src/engine/operation.ts), which cannot import
 * this module (operation → emergency → rollback → operation would be a cycle).
 */
export function securityHoldFile(config: Config): string {
  return path.join(config.state.dir, 'security-hold')
}

export interface SecurityHold {
  since: string
  reason: string
  by: string
  evidence?: string
}

export function readSecurityHold(config: Config): SecurityHold | undefined {
  const file = securityHoldFile(config)
  if (!existsSync(file)) return undefined
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as SecurityHold
  } catch {
    return { since: statSync(file).mtime.toISOString(), reason: '(unreadable hold file)', by: 'unknown' }
  }
}

export function whoAmI(): string {
  try {
    return userInfo().username
  } catch {
    return process.env.USER ?? 'unknown'
  }
}

/** Lifts the security hold; the release (who, why, when, and the hold it lifted) is kept in state/security-hold.log. */
export function releaseSecurityHold(config: Config, reason: string): SecurityHold {
  if (!reason.trim())
    throw new UserError(
      'emergency release needs --reason TEXT: say who approved the restart and why',
      'bad_argument'
    )
  const hold = readSecurityHold(config)
  if (!hold)
    throw new UserError(
      `there is no security hold (${securityHoldFile(config)}) — nothing to release`,
      'no_hold'
    )
  appendFileSync(
    path.join(config.state.dir, 'security-hold.log'),
    JSON.stringify({ releasedAt: new Date().toISOString(), releasedBy: whoAmI(), reason, hold }) + '\n'
  )
  rmSync(securityHoldFile(config))
  return hold
}

/** The breach record: when the breach happened (as told, else when isolation began) and the evidence. */
export interface BreachRecord {
  breachAt: string
  recordedAt: string
  reason: string
  evidence?: string
}

export function breachRecordFile(config: Config): string {
  return path.join(config.state.dir, 'security-breach.json')
}

export function writeBreachRecord(config: Config, record: BreachRecord): void {
  mkdirSync(config.state.dir, { recursive: true })
  writeFileSync(breachRecordFile(config), JSON.stringify(record, null, 2) + '\n')
}

export function breachRecord(config: Config): BreachRecord | undefined {
  const file = breachRecordFile(config)
  if (!existsSync(file)) return undefined
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as BreachRecord
  } catch {
    return {
      breachAt: statSync(file).mtime.toISOString(),
      recordedAt: '',
      reason: '(unreadable breach record)'
    }
  }
}

/** Whether a backup was taken at or after the recorded breach (so it may hold what the attacker left). */
export function isPostBreach(config: Config, backup: Pick<BackupInfo, 'manifest'>): boolean {
  const breach = breachRecord(config)
  if (!breach) return false
  return Date.parse(backup.manifest.createdAt) >= Date.parse(breach.breachAt)
}

/** The newest backup of the release kind taken before the breach: the recovery point after one. */
export function latestPreBreachBackup(service: Service): BackupInfo | undefined {
  return service.store.list().find(b => b.manifest.kind === 'snapshot' && !isPostBreach(service.config, b))
}
