/**
 * Where a rollback of one environment runs: the self-hosted runner labels and the backout.yml path, from
 * the one mapping file (.github/backout-environments.yml by default; docs/security.md shows it). Every job of
 * one rollback runs with these labels and this config, so an environment name always means the same host
 * and the same service — never whichever runner picks the job up. Pure: the caller reads the file.
 */
import { UserError } from './errors'

export interface RollbackTarget {
  runnerLabels: string[]
  config: string
}

const ENV_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/
const LABEL = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$/

function checkConfigPath(value: unknown, where: string): string {
  if (typeof value !== 'string' || !value.trim())
    throw new UserError(`${where}.config: expected the path of backout.yml in the repository`, 'bad_config')
  if (value.startsWith('/') || value.split(/[\\/]/).includes('..'))
    throw new UserError(
      `${where}.config: "${value.slice(0, 80)}" must be a path inside the repository (no leading / and no ..)`,
      'bad_config'
    )
  return value
}

function checkLabels(value: unknown, where: string): string[] {
  if (!Array.isArray(value) || !value.length || !value.every(l => typeof l === 'string' && LABEL.test(l)))
    throw new UserError(
      `${where}: expected a list of runner labels such as [self-hosted, prod-web-1]`,
      'bad_config'
    )
  if (!value.includes('self-hosted') || value.length < 2)
    throw new UserError(
      `${where}: expected self-hosted and a label only the runner beside this service has (e.g. its host name), ` +
        'so that every job of one rollback lands on the same host',
      'bad_config'
    )
  return value as string[]
}

/**
 * The target of `environment`: from the mapping when there is one (the environment must be in it), else
 * from the workflow's explicit runner-labels and config inputs. Anything else is refused, naming what to fix.
 */
export function resolveRollbackTarget(
  environment: string,
  mapping: unknown,
  inputs: { runnerLabels: string; config: string },
  mappingFile = '.github/backout-environments.yml'
): RollbackTarget {
  if (!ENV_NAME.test(environment) || environment.includes('..'))
    throw new UserError(
      `input environment: "${environment.slice(0, 64)}" is not an environment name (letters, digits, _ . -, up to 64)`,
      'bad_input'
    )
  if (mapping !== undefined) {
    if (!mapping || typeof mapping !== 'object' || Array.isArray(mapping))
      throw new UserError(
        `${mappingFile}: expected a map of environment name → { runner, config }`,
        'bad_config'
      )
    const entries = mapping as Record<string, unknown>
    const entry = Object.prototype.hasOwnProperty.call(entries, environment)
      ? entries[environment]
      : undefined
    if (!entry || typeof entry !== 'object')
      throw new UserError(
        `environment "${environment}" is not in ${mappingFile} — known: ${Object.keys(entries).join(', ') || 'none'}; ` +
          'add it there (runner labels and config) before rolling it back',
        'bad_input'
      )
    const e = entry as { runner?: unknown; config?: unknown }
    return {
      runnerLabels: checkLabels(e.runner, `${mappingFile}: ${environment}.runner`),
      config: checkConfigPath(e.config, `${mappingFile}: ${environment}`)
    }
  }
  if (!inputs.runnerLabels.trim())
    throw new UserError(
      `no ${mappingFile} and no runner-labels input: say which runner rolls back "${environment}" — ` +
        `add ${mappingFile} (see docs/security.md) or pass runner-labels and config`,
      'bad_config'
    )
  let labels: unknown
  try {
    labels = JSON.parse(inputs.runnerLabels)
  } catch {
    throw new UserError(
      'input runner-labels: expected a JSON list such as ["self-hosted","prod-web-1"]',
      'bad_input'
    )
  }
  return {
    runnerLabels: checkLabels(labels, 'input runner-labels'),
    config: checkConfigPath(inputs.config || 'backout.yml', 'input')
  }
}

/** The approval environments a rollback may enter: its level, and the ones after it when it escalates. */
export function approvalEnvironments(level: string, escalate: boolean): string[] {
  const start = level === 'auto' ? 1 : Number(level)
  if (![1, 2, 3].includes(start))
    throw new UserError(`input level: expected 1, 2, 3 or auto, got "${level.slice(0, 20)}"`, 'bad_input')
  const levels = escalate || level === 'auto' ? [1, 2, 3].filter(l => l >= start) : [start]
  return levels.map(l => `rollback-level-${l}`)
}
