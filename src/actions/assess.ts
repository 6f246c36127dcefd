import { UserError } from '../core/errors'
import { assess } from '../engine/assess'
import type { ActionContext, ActionOutcome } from './action-runner'

/** assess: severity, recommended level and reasons, each with its measured value. */
export async function runAssess(ctx: ActionContext<'assess'>): Promise<ActionOutcome<'assess'>> {
  const samples = Number(ctx.input('samples') || '40')
  if (!Number.isInteger(samples) || samples < 1 || samples > 10_000)
    throw new UserError(
      `input samples: expected a whole number from 1 to 10000, got "${ctx.input('samples').slice(0, 40)}"`,
      'bad_input'
    )
  const { assessment: a, probes, recommendation: rec } = await assess(ctx.service(), { samples })
  const rows = a.reasons.map(
    r => `| ${r.severity} | ${r.message.replace(/\|/g, '\\|')} | ${r.measured ?? ''} | ${r.threshold ?? ''} |`
  )
  return {
    decision: a.shouldRollback ? 'rollback' : a.severity === 'INCONCLUSIVE' ? 'inconclusive' : 'monitor',
    reasonCode: a.reasons[0]?.code ?? 'ok',
    outputs: {
      severity: a.severity,
      // The level whose plan passed a dry run (a non-rollback action first, e.g. start the database, is in the summary).
      level: rec ? (rec.level ?? '') : (a.recommendedLevel ?? ''),
      should_rollback: a.shouldRollback,
      reasons: JSON.stringify(a.reasons)
    },
    summary: [
      `## backout assess: ${a.severity}`,
      '',
      a.shouldRollback
        ? `**Roll back — Level ${a.recommendedLevel}, act ${a.act}.** ${a.levelWhy ?? ''}`
        : `No rollback: ${a.act}.`,
      ...(rec
        ? ['', `**Recommended: ${rec.action}** — ${rec.why}`, '', ...rec.commands.map(c => `    ${c}`)]
        : []),
      '',
      '| Severity | Finding | Measured | Threshold |',
      '|---|---|---|---|',
      ...rows,
      '',
      '| Probe | Value | Took |',
      '|---|---|---|',
      ...probes.map(p => `| ${p.name} | ${p.value} | ${p.ms} ms |`)
    ].join('\n')
  }
}
