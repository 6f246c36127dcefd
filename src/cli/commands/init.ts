import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { createInterface } from 'node:readline/promises'
import type { Command } from 'commander'
import { parse as parseYaml } from 'yaml'
import { parseConfig } from '../../core/config'
import { UserError } from '../../core/errors'
import {
  type Detected,
  type InitAnswers,
  buildConfig,
  missingAnswers,
  renderConfig
} from '../../core/init-config'
import type { Logger } from '../../core/logger'
import { DEFAULT_WORKFLOW_OPTIONS, callerWorkflows } from '../../core/workflow-templates'
import { gitWorkTreeOf } from '../../drivers/config-warnings'
import { detectHost } from '../../drivers/host-detect'
import { cliInvocation } from '../invocation'

interface InitOptions extends InitAnswers {
  dir: string
  output?: string
  force?: boolean
  yes?: boolean
  nginxEtc?: string
  workflows?: string
  repo: string
  ref: string
  runnerLabels: string
  deployWorkflow: string
}

/**
 * Asks on the terminal for what detection could not find, round after round (an answer may raise a new
 * question: runtime systemd needs the units). Lines are read through the iterator, which buffers them:
 * answers typed ahead or pasted are not lost.
 */
async function askMissing(detected: Detected, answers: InitAnswers): Promise<void> {
  const rl = createInterface({ input: process.stdin, terminal: false })
  const lines = rl[Symbol.asyncIterator]()
  const asked = new Set<string>()
  try {
    for (;;) {
      const todo = missingAnswers(detected, answers).filter(q => !asked.has(q.key))
      if (!todo.length) return
      for (const q of todo) {
        asked.add(q.key)
        process.stderr.write(`${q.question}${q.default ? ` [${q.default}]` : ''}: `)
        const next = await lines.next()
        if (next.done) return
        const value = String(next.value).trim() || q.default
        if (value) (answers as Record<string, string>)[q.key] = value
      }
    }
  } finally {
    rl.close()
  }
}

/** Writes the caller workflows into dir; an existing file is kept unless force. Returns what was written. */
export function writeWorkflows(
  dir: string,
  configFile: string,
  o: Pick<InitOptions, 'repo' | 'ref' | 'runnerLabels' | 'deployWorkflow' | 'environment' | 'force'>
): { written: string[]; kept: string[] } {
  if (!/^[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+$/.test(o.repo))
    throw new UserError(`--repo ${o.repo}: expected OWNER/REPO, like backout/backout`, 'bad_argument')
  mkdirSync(dir, { recursive: true })
  // backout.yml's path as the workflow's checkout sees it: relative to the repository holding the workflows.
  const repoRoot = gitWorkTreeOf(dir) ?? path.resolve(dir, '../..')
  const config = path.relative(repoRoot, path.resolve(configFile))
  const files = callerWorkflows({
    repo: o.repo,
    ref: o.ref,
    environment: o.environment ?? DEFAULT_WORKFLOW_OPTIONS.environment,
    runnerLabels: o.runnerLabels
      .split(',')
      .map(s => s.trim())
      .filter(Boolean),
    config: config.startsWith('..') ? path.basename(configFile) : config,
    deployWorkflow: o.deployWorkflow
  })
  const written: string[] = []
  const kept: string[] = []
  for (const [name, text] of Object.entries(files)) {
    const file = path.join(dir, name)
    if (existsSync(file) && !o.force) kept.push(file)
    else {
      writeFileSync(file, text)
      written.push(file)
    }
  }
  return { written, kept }
}

export function register(program: Command, log: Logger, print: (human: string, data: unknown) => void): void {
  program
    .command('init')
    .description(
      'write a commented backout.yml from what this host shows (nginx, targets, database, migrations, data, ' +
        'Prometheus), asking only what it cannot find (never without a terminal: pass flags); --workflows DIR ' +
        "also writes the caller workflows into your repository's .github/workflows"
    )
    .option('--dir <dir>', "the app's directory on this host (its .env, compose file, migrations, data)", '.')
    .option('-o, --output <file>', 'where to write the config (default: DIR/backout.yml, or --config)')
    .option('--force', 'overwrite an existing config or workflow file')
    .option('-y, --yes', 'never ask, even on a terminal: what is missing is an error naming its flag')
    .option('--service <name>', 'the service name')
    .option('--environment <name>', 'the deployment environment', 'production')
    .option('--runtime <kind>', 'process, compose or systemd')
    .option('--nginx-upstream-file <file>', 'the nginx file with the upstream block')
    .option('--nginx-etc <dir>', "the host's nginx directory searched for it", '/etc/nginx')
    .option('--nginx-url <url>', 'the URL nginx serves the app on')
    .option('--blue-upstream <host:port>', 'where nginx sends traffic when blue is live')
    .option('--green-upstream <host:port>', 'where nginx sends traffic when green is live')
    .option('--blue-version <v>', 'the version blue runs')
    .option('--green-version <v>', 'the version green runs')
    .option('--blue-unit <unit>', 'systemd: the unit of blue')
    .option('--green-unit <unit>', 'systemd: the unit of green')
    .option('--database-url <url>', 'postgresql://user:${DB_PASSWORD}@host/db (keep the password a ${VAR})')
    .option('--backups-dir <dir>', 'where backups go (default: /var/backups/backout/<service>)')
    .option('--state-dir <dir>', 'locks, run records, seal key (default: /var/lib/backout/<service>)')
    .option('--prometheus-url <url>', 'Prometheus, when not on http://127.0.0.1:9090')
    .option('--workflows <dir>', 'also write the caller workflows into DIR (your .github/workflows)')
    .option('--repo <owner/repo>', 'where backout lives on GitHub, for uses:', DEFAULT_WORKFLOW_OPTIONS.repo)
    .option('--ref <ref>', 'the tag, branch or SHA of backout to pin in uses:', DEFAULT_WORKFLOW_OPTIONS.ref)
    .option('--runner-labels <a,b>', 'the self-hosted runner labels beside the service', 'self-hosted')
    .option('--deploy-workflow <name>', 'the deploy workflow whose failure triggers assess', 'deploy')
    .action(async (o: InitOptions, cmd: Command) => {
      const globals = cmd.parent?.opts<{ config?: string }>() ?? {}
      const dir = path.resolve(o.dir)
      const output = path.resolve(o.output ?? globals.config ?? path.join(dir, 'backout.yml'))
      if (o.runtime && !['process', 'compose', 'systemd'].includes(o.runtime))
        throw new UserError(`--runtime ${o.runtime}: expected process, compose or systemd`, 'bad_argument')
      const result: { config?: string; kept?: string; workflows?: string[]; keptWorkflows?: string[] } = {}
      const lines: string[] = []

      if (existsSync(output) && !o.force) {
        result.kept = output
        lines.push(`${output} exists — kept (--force rewrites it)`)
      } else {
        const detected = await detectHost({ dir, service: o.service, nginxEtc: o.nginxEtc })
        const answers: InitAnswers = { ...o }
        let missing = missingAnswers(detected, answers)
        if (missing.length && process.stdin.isTTY && !o.yes) {
          for (const n of detected.notes) log.info(`found: ${n}`)
          await askMissing(detected, answers)
          missing = missingAnswers(detected, answers)
        }
        if (missing.length)
          throw new UserError(
            `backout init could not find: ${missing.map(q => `${q.question} (${q.flag})`).join('; ')} — ` +
              'pass those flags (or run it on a terminal to be asked). Nothing was written.',
            'bad_argument'
          )
        const config = buildConfig(detected, answers, path.dirname(output))
        const text = renderConfig(config, detected)
        parseConfig(parseYaml(text), output) // what init writes always validates
        mkdirSync(path.dirname(output), { recursive: true })
        writeFileSync(output, text)
        result.config = output
        lines.push(`wrote ${output} (valid) — found:`, ...detected.notes.map(n => `  - ${n}`))
      }
      if (o.workflows) {
        const w = writeWorkflows(path.resolve(o.workflows), output, o)
        result.workflows = w.written
        result.keptWorkflows = w.kept
        lines.push(
          ...w.written.map(f => `wrote ${f}`),
          ...w.kept.map(f => `${f} exists — kept (--force rewrites it)`)
        )
      }
      const cli = cliInvocation()
      lines.push(
        'next:',
        `  ${cli} --config ${output} doctor        # the host, before the day it is needed`,
        `  ${cli} --config ${output} rollback --level 1 --dry-run`
      )
      print(lines.join('\n'), result)
    })
}
