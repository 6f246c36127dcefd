import { writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import * as core from '@actions/core'
import { UserError, exitCodeFor, messageOf, reasonCodeFor } from '../core/errors'
import type { RunRecord } from '../core/run-record'
import { runSummaryMarkdown } from '../core/summary'
import { configPath, loadConfig } from '../drivers/config-file'
import { createService, type Service } from '../engine/service'
import { ActionsLogger } from './actions-logger'
import { ACTION_RESULT_SCHEMA, type ActionName, type InputName, type OwnOutputs } from './contract'

/** What an action's run() returns: its decision, its own outputs, and the run record when there is one. */
export interface ActionOutcome<N extends ActionName = ActionName> {
  decision: string
  reasonCode: string
  outputs: OwnOutputs<N> | Record<string, never>
  record?: RunRecord
  /** Extra markdown for the job summary. */
  summary?: string
  /** The operation ran and failed (or was refused): the step fails after outputs are set. */
  failure?: unknown
}

/** An outcome as action-runner.ts handles it, whatever the action. */
type AnyOutcome = Omit<ActionOutcome, 'outputs'> & { outputs: Record<string, string | number | boolean> }

export interface ActionContext<N extends ActionName = ActionName> {
  log: ActionsLogger
  /** The service from the `config` input. */
  service(): Service
  /** An input by its contract name (contract.ts): a name the action.yml does not declare does not compile. */
  input(key: InputName<N>): string
  /** A strict boolean input: true or false; anything else is refused (bad_input), never a silent false. */
  boolean(key: InputName<N>): boolean
}

/** A strict boolean input: a typo is refused with the input named, never a silent false. */
export function booleanInput(name: string): boolean {
  const raw = core.getInput(name)
  if (raw === 'true' || raw === 'True' || raw === 'TRUE') return true
  if (raw === 'false' || raw === 'False' || raw === 'FALSE') return false
  throw new UserError(`input ${name}: expected true or false, got "${raw.slice(0, 40)}"`, 'bad_input')
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

function applyEnvInput(log: ActionsLogger): void {
  const values = parseEnvInput(core.getInput('env'))
  for (const [name, value] of Object.entries(values)) {
    if (value) log.mask(value)
    process.env[name] = value
  }
}

/**
 * The one wrapper around every action: reads nothing itself but the config path, runs the action, sets
 * decision / reason_code / result and the action's outputs, writes the job summary, and is the only
 * place that calls setFailed — for Errors and for thrown values that are not Errors alike.
 */
export async function runAction<N extends ActionName>(
  name: N,
  run: (ctx: ActionContext<N>) => Promise<ActionOutcome<N>>
): Promise<void> {
  const log = new ActionsLogger()
  const ctx: ActionContext<N> = {
    log,
    service: () => createService(loadConfig(configPath(core.getInput('config') || undefined)), log),
    input: key => core.getInput(key),
    boolean: key => booleanInput(key)
  }
  try {
    applyEnvInput(log)
    const outcome = await run(ctx)
    setOutputs(name, outcome, log)
    const summary = [outcome.record ? runSummaryMarkdown(outcome.record) : '', outcome.summary ?? '']
      .filter(Boolean)
      .join('\n\n')
    if (summary && process.env.GITHUB_STEP_SUMMARY) await core.summary.addRaw(summary, true).write()
    if (outcome.failure !== undefined) core.setFailed(messageOf(outcome.failure))
  } catch (e) {
    const decision = exitCodeFor(e) === 2 ? 'refused' : exitCodeFor(e) === 3 ? 'locked' : 'failed'
    setOutputs(name, { decision, reasonCode: reasonCodeFor(e), outputs: {}, failure: e }, log)
    core.setFailed(messageOf(e))
  }
}

/**
 * The full result (the run record and the error message included) goes to a file on the runner, mode 0600:
 * a record can hold anything a step printed, and the runner drops a job output that contains any masked
 * value ("Skip output ... may contain secret"). Outputs carry only ids, codes and versions.
 */
function writeResultFile(name: ActionName, outcome: AnyOutcome): string {
  const dir = process.env.RUNNER_TEMP || tmpdir()
  const file = path.join(dir, `backout-${name}-${outcome.record?.id ?? `${Date.now()}-${process.pid}`}.json`)
  try {
    writeFileSync(
      file,
      JSON.stringify(
        {
          schema: ACTION_RESULT_SCHEMA,
          action: name,
          decision: outcome.decision,
          reasonCode: outcome.reasonCode,
          outputs: outcome.outputs,
          error: outcome.failure === undefined ? undefined : messageOf(outcome.failure),
          record: outcome.record
        },
        null,
        2
      ) + '\n',
      { mode: 0o600 }
    )
    return file
  } catch (e) {
    core.warning(`could not write the result file in ${dir}: ${messageOf(e)}`)
    return ''
  }
}

function setOutputs(name: ActionName, outcome: AnyOutcome, log: ActionsLogger): void {
  const outputs: Record<string, string> = {
    ...Object.fromEntries(Object.entries(outcome.outputs).map(([k, v]) => [k, String(v)])),
    decision: outcome.decision,
    reason_code: outcome.reasonCode,
    run_id: outcome.record?.id ?? '',
    result_file: writeResultFile(name, outcome)
  }
  outputs.result = JSON.stringify(compactResult(name, outcome, outputs))
  for (const [key, value] of Object.entries(outputs)) {
    // By construction no id or code carries a secret, but text (assess's measured reasons name URLs) may contain a
    // value that was masked — even one as plain as DB_HOST=127.0.0.1. The runner would drop the whole output; the
    // value is replaced by *** instead, and the output kept.
    const secrets = log.masked().filter(secret => secret !== '' && value.includes(secret))
    if (secrets.length > 0) {
      core.info(`output ${key}: ${secrets.length} value(s) masked as secret replaced by ***`)
      core.setOutput(
        key,
        secrets.reduce((v, secret) => v.split(secret).join('***'), value)
      )
    } else core.setOutput(key, value)
  }
}

/** The `result` output: schema backout.action-result/v2 — ids and codes only; the record is in result_file. */
export function compactResult(
  name: ActionName,
  outcome: Pick<ActionOutcome, 'decision' | 'reasonCode'>,
  outputs: Record<string, string>
): Record<string, string> {
  return {
    schema: ACTION_RESULT_SCHEMA,
    action: name,
    decision: outcome.decision,
    reasonCode: outcome.reasonCode,
    runId: outputs.run_id ?? '',
    resultFile: outputs.result_file ?? ''
  }
}
