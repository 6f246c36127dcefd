/**
 * The deploy freeze: after a rollback, nothing may redeploy the bad release until a person says so. The
 * incident opens it (a file in state.dir on the host beside the service); the deploy workflow's first job
 * checks it (the deploy-freeze action, mode check) and stops; `/rollback unfreeze` or closing the incident
 * issue (rollback-unfreeze.yml) lifts it.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import type { Config } from '../core/config'

export interface DeployFreeze {
  schema: 'backout.deploy-freeze/v1'
  /** The incident issue that holds the freeze. */
  issue: number
  reason: string
  runId?: string
  since: string
}

export function freezeFile(config: Pick<Config, 'state'>): string {
  return path.join(config.state.dir, 'deploy-freeze.json')
}

export function readFreeze(config: Pick<Config, 'state'>): DeployFreeze | undefined {
  const file = freezeFile(config)
  if (!existsSync(file)) return undefined
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as DeployFreeze
  } catch {
    // An unreadable freeze file is still a freeze: fail closed.
    return { schema: 'backout.deploy-freeze/v1', issue: 0, reason: 'unreadable freeze file', since: '' }
  }
}

/** Opens (or keeps) the freeze; the first incident that opened it stays its holder. */
export function openFreeze(
  config: Pick<Config, 'state'>,
  f: Omit<DeployFreeze, 'schema' | 'since'>
): DeployFreeze {
  const existing = readFreeze(config)
  if (existing) return existing
  const freeze: DeployFreeze = { schema: 'backout.deploy-freeze/v1', ...f, since: new Date().toISOString() }
  const file = freezeFile(config)
  mkdirSync(path.dirname(file), { recursive: true })
  writeFileSync(`${file}.tmp`, JSON.stringify(freeze, null, 2) + '\n')
  renameSync(`${file}.tmp`, file)
  return freeze
}

/** Lifts the freeze; with `issue`, only the freeze that incident holds. Returns the freeze it lifted. */
export function liftFreeze(config: Pick<Config, 'state'>, issue?: number): DeployFreeze | undefined {
  const existing = readFreeze(config)
  if (!existing || (issue !== undefined && existing.issue !== 0 && existing.issue !== issue)) return undefined
  rmSync(freezeFile(config), { force: true })
  return existing
}
