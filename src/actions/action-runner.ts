import * as core from '@actions/core'
import { exitCodeFor, messageOf, reasonCodeFor } from '../core/errors'
import type { RunRecord } from '../core/run-record'
import { runSummaryMarkdown } from '../core/summary'
import { configPath, loadConfig } from '../drivers/config-file'
import { createService, type Service } from '../engine/service'
import { ActionsLogger } from './actions-logger'
import { ACTION_RESULT_SCHEMA, type ActionName } from './contract'

/** What an action's run() returns: its decision, outputs, and the run record when there is one. */
export interface ActionOutcome {
  decision: string
  reasonCode: string
  outputs: Record<string, string | number | boolean>
  record?: RunRecord
  /** Extra markdown for the job summary. */
  summary?: string
  /** The operation ran and failed (or was refused): the step fails after outputs are set. */
  failure?: unknown
}

export interface ActionContext {
  log: ActionsLogger
  /** The service from the `config` input. */
  service(): Service
}

/** A strict boolean input: a typo is an error, never a silent false. */
export function booleanInput(name: string): boolean {
  return core.getBooleanInput(name)
}

/**
 * The one wrapper around every action: reads nothing itself but the config path, runs the action, sets
 * decision / reason_code / result and the action's outputs, writes the job summary, and is the only
 * place that calls setFailed — for Errors and for thrown values that are not Errors alike.
 */
export async function runAction(
  name: ActionName,
  run: (ctx: ActionContext) => Promise<ActionOutcome>
): Promise<void> {
  const log = new ActionsLogger()
  const ctx: ActionContext = {
    log,
    service: () => createService(loadConfig(configPath(core.getInput('config') || undefined)), log)
  }
  try {
    const outcome = await run(ctx)
    setOutputs(name, outcome)
    const summary = [outcome.record ? runSummaryMarkdown(outcome.record) : '', outcome.summary ?? '']
      .filter(Boolean)
      .join('\n\n')
    if (summary && process.env.GITHUB_STEP_SUMMARY) await core.summary.addRaw(summary, true).write()
    if (outcome.failure !== undefined) core.setFailed(messageOf(outcome.failure))
  } catch (e) {
    const decision = exitCodeFor(e) === 2 ? 'refused' : exitCodeFor(e) === 3 ? 'locked' : 'failed'
    setOutputs(name, { decision, reasonCode: reasonCodeFor(e), outputs: {}, failure: e })
    core.setFailed(messageOf(e))
  }
}

function setOutputs(name: ActionName, outcome: ActionOutcome): void {
  core.setOutput('decision', outcome.decision)
  core.setOutput('reason_code', outcome.reasonCode)
  for (const [k, v] of Object.entries(outcome.outputs)) core.setOutput(k, String(v))
  core.setOutput(
    'result',
    JSON.stringify({
      schema: ACTION_RESULT_SCHEMA,
      action: name,
      decision: outcome.decision,
      reasonCode: outcome.reasonCode,
      outputs: outcome.outputs,
      error: outcome.failure === undefined ? undefined : messageOf(outcome.failure),
      record: outcome.record
    })
  )
}
