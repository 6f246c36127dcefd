import { OperationError } from '../core/errors'
import { checksMarkdown, validate } from '../engine/validate'
import { booleanInput, type ActionContext, type ActionOutcome } from './action-runner'

/** validate: every check with pass / fail / skip, its measured value and threshold. */
export async function runValidate(ctx: ActionContext): Promise<ActionOutcome> {
  const report = await validate(ctx.service(), { thorough: booleanInput('thorough') })
  const failed = report.checks.filter(c => c.status === 'fail')
  return {
    decision: report.passed ? 'passed' : 'failed',
    reasonCode: report.passed ? 'ok' : 'validation_failed',
    outputs: { passed: report.passed },
    summary: checksMarkdown(report),
    failure: report.passed
      ? undefined
      : new OperationError(
          `validation failed: ${failed.map(c => `${c.name} (${c.measured})`).join('; ')}`,
          'validation_failed'
        )
  }
}
