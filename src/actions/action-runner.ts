import * as core from '@actions/core'
import { UserError, exitCodeFor, messageOf, reasonCodeFor } from '../core/errors'
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

/** Names the `env` input may not set: they change how backout itself or the runner behaves. */
const RESERVED_ENV = /^(PATH|HOME|NODE_.*|LD_.*|GITHUB_.*|RUNNER_.*|ACTIONS_.*|INPUT_.*|BACKOUT_CONFIG)$/

/**
 * The `env` input: lines of NAME=value (from a secret, e.g. `env: ${{ secrets.BACKOUT_ENV }}`) that supply the
 * ${VAR}s of backout.yml when the runner's environment does not. Each value is masked before anything is logged.
 * Blank lines and # comments are skipped; anything else that is not NAME=value is refused (exit 2), naming the line
 * number — never its content.
 */
export function parseEnvInput(text: string): Record<string, string> {
  const out: Record<string, string> = {}
  text.split(/\r?\n/).forEach((line, i) => {
    if (!line.trim() || line.trimStart().startsWith('#')) return
    const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line)
    if (!m?.[1])
      throw new UserError(
        `input env, line ${i + 1}: expected NAME=value (a letter or _ first, then letters, digits, _) — fix the secret that feeds it`,
        'bad_input'
      )
    if (RESERVED_ENV.test(m[1]))
      throw new UserError(
        `input env, line ${i + 1}: ${m[1]} cannot be set this way (it changes how backout or the runner behaves) — ` +
          'only the ${VAR}s that backout.yml uses belong there',
        'bad_input'
      )
    out[m[1]] = m[2] ?? ''
  })
  return out
}

function applyEnvInput(): void {
  const values = parseEnvInput(core.getInput('env'))
  for (const [name, value] of Object.entries(values)) {
    if (value) core.setSecret(value)
    process.env[name] = value
  }
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
    applyEnvInput()
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
