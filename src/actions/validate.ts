import { OperationError } from '../core/errors'
import { checksMarkdown, validate } from '../engine/validate'
import { type ActionContext, type ActionOutcome } from './action-runner'

/** validate: every check with pass / fail / skip, its measured value and threshold. */
export async function runValidate(ctx: ActionContext<'validate'>): Promise<ActionOutcome<'validate'>> {
  const report = await validate(ctx.service(), { thorough: ctx.boolean('thorough') })
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
