import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import type { Config } from '../core/config'
import type { Severity } from '../core/severity'

/**
 * What assess and validate last measured, kept in state/ so the incident can state facts: the severity assess
 * measured, when a failing assess first saw the problem, and whether validate passed after the rollback.
 */

export interface AssessObservation {
  at: string
  severity: Severity
  shouldRollback: boolean
  /** When the current run of failing (MEDIUM or worse) assessments began; absent while the service is fine. */
  firstFailingAt?: string
}

export interface ValidateObservation {
  at: string
  passed: boolean
  /** The measured error rate and p95, as validate printed them; absent when not measured. */
  errorRate?: string
  p95?: string
}

const file = (config: Config, name: string): string => path.join(config.state.dir, name)

function readJson<T>(f: string): T | undefined {
  if (!existsSync(f)) return undefined
  try {
    return JSON.parse(readFileSync(f, 'utf8')) as T
  } catch {
    return undefined
  }
}

function writeJson(f: string, value: unknown): void {
  mkdirSync(path.dirname(f), { recursive: true })
  writeFileSync(`${f}.tmp`, JSON.stringify(value, null, 2) + '\n')
  renameSync(`${f}.tmp`, f)
}

const FAILING: readonly Severity[] = ['CRITICAL', 'HIGH', 'MEDIUM']

export function lastAssessment(config: Config): AssessObservation | undefined {
  return readJson<AssessObservation>(file(config, 'assess-latest.json'))
}

/** Records an assessment; the first failing one of a run of failing ones keeps its time as the detection time. */
export function recordAssessment(
  config: Config,
  severity: Severity,
  shouldRollback: boolean,
  at = new Date()
): void {
  const previous = lastAssessment(config)
  const failing = FAILING.includes(severity)
  const firstFailingAt = failing ? (previous?.firstFailingAt ?? at.toISOString()) : undefined
  writeJson(file(config, 'assess-latest.json'), {
    at: at.toISOString(),
    severity,
    shouldRollback,
    ...(firstFailingAt ? { firstFailingAt } : {})
  } satisfies AssessObservation)
}

export function lastValidation(config: Config): ValidateObservation | undefined {
  return readJson<ValidateObservation>(file(config, 'validate-latest.json'))
}

export function recordValidation(config: Config, observation: ValidateObservation): void {
  writeJson(file(config, 'validate-latest.json'), observation)
}
