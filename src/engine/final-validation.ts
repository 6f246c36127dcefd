import { OperationError } from '../core/errors'
import type { RunRecord } from '../core/run-record'
import { integrityCheck } from '../drivers/database'
import type { Step } from './run-steps'
import type { Service } from './service'
import { checksText, validate, type Check } from './validate'

/**
 * The database's own consistency after its rollback, before the application starts on it: SQLite's
 * PRAGMA integrity_check and foreign_key_check (the VBRPG checklist), PostgreSQL's critical tables present.
 * A failure fails the run (exit 1): a rollback is not a success on a damaged database.
 */
export function databaseIntegrityStep(service: Service, budgetSeconds: number): Step {
  const db = service.config.database
  return {
    name: 'Database integrity check',
    kind: 'read',
    budgetSeconds,
    describe: () =>
      !db
        ? 'no database configured'
        : db.kind === 'sqlite'
          ? `PRAGMA integrity_check and PRAGMA foreign_key_check on ${db.path}`
          : `the critical tables (${db.criticalTables.join(', ') || 'none configured'}) are present`,
    async run() {
      if (!db) return 'no database configured'
      const r = await integrityCheck(db)
      if (!r.ok)
        throw new OperationError(
          `the database after the rollback fails its integrity check: ${r.detail} — check it by hand, or escalate to Level 3`,
          'integrity_failed'
        )
      return r.detail
    }
  }
}

/**
 * A 'critical data' failure only because rows are fewer than in the newest backup — the safety backup of the bad
 * state — is the data loss a restore to an older point causes, recorded in record.dataLoss; not a failure then.
 */
function expectedLoss(check: Check, record: RunRecord): boolean {
  return (
    check.name === 'critical data' &&
    record.dataLoss !== undefined &&
    check.threshold.startsWith('no fewer rows') &&
    !check.measured.includes('=missing')
  )
}

/**
 * Measurements that the runbook's success criteria do not name (Level 2: containers healthy, HTTP API, database
 * queries, no corruption marker, smoke tests; Level 3: also tables present, critical data, health checks): they
 * depend on load as much as on the rollback, so they are reported as warnings, not failures.
 */
const ADVISORY = new Set(['resource usage', 'recent log errors', 'error rate', 'p95 latency', 'monitoring'])

/**
 * The runbook's last step of a level — "run comprehensive validation" (validate_rollback.sh --thorough): the
 * validate command's checks against the service as the rollback left it. Any failing check fails the run
 * (exit 1, escalatable): a rollback that leaves the service unhealthy is never reported as a success.
 */
export function finalValidationStep(
  service: Service,
  record: RunRecord,
  options: { name: string; budgetSeconds: number; thorough: boolean }
): Step {
  const v = service.config.validate
  return {
    name: options.name,
    kind: 'read',
    budgetSeconds: options.budgetSeconds,
    describe: () =>
      `validate the service (${options.thorough ? `thorough: smoke tests, monitoring for ${v.durationSeconds}s` : 'quick'}): ` +
      'targets, HTTP, database, integrity, critical data, ports, resources, log errors, error rate and p95',
    async run() {
      const report = await validate(service, { thorough: options.thorough })
      const failed = report.checks.filter(
        c => c.status === 'fail' && !expectedLoss(c, record) && !ADVISORY.has(c.name)
      )
      const warned = report.checks.filter(c => c.status === 'fail' && ADVISORY.has(c.name))
      service.log.info(checksText(report))
      if (failed.length)
        throw new OperationError(
          `validation after the rollback failed: ${failed.map(c => `${c.name} (${c.measured}; expected ${c.threshold || 'pass'})`).join('; ')}`,
          'validation_failed'
        )
      const passed = report.checks.filter(c => c.status === 'pass').length
      const skipped = report.checks.filter(c => c.status === 'skip').length
      const loss = report.checks.find(c => expectedLoss(c, record))
      return (
        `${passed} checks pass, ${skipped} skipped` +
        (warned.length
          ? `; WARNING: ${warned.map(c => `${c.name} ${c.measured} (expected ${c.threshold})`).join('; ')}`
          : '') +
        (loss ? `; critical data ${loss.measured} (fewer rows than before: the recorded data loss)` : '')
      )
    }
  }
}
