import { readFileSync } from 'node:fs'
import path from 'node:path'
import { OperationError, UserError } from '../core/errors'
import type { Logger } from '../core/logger'
import { type AlembicDatabase, alembicDatabase } from './alembic-database'
import { type CommandResult, runCommand } from './exec'

/**
 * Alembic through its CLI (the VBRPG runbook): `alembic -c <ini> <command>` with argument arrays, run in the
 * directory holding alembic.ini. The database comes from the project's env.py (alembic.ini, or an environment
 * variable passed in `env`). Every downgrade is checked afterwards: `alembic current` must equal the target.
 */

export interface AlembicOptions {
  /** The directory holding alembic.ini (the runbook's `backend/`). */
  projectDir: string
  /** The config file, relative to projectDir; default alembic.ini. */
  config?: string
  /** The alembic executable; default $BACKOUT_ALEMBIC, else /usr/bin/alembic. */
  alembicBin?: string
  /** The Python that runs alembic (for reading raw revision ids); default: the alembic script's #! line. */
  python?: string
  /** Extra environment for alembic (e.g. DATABASE_URL for env.py); merged over process.env. */
  env?: NodeJS.ProcessEnv
  signal?: AbortSignal
  logger?: Logger
  /** Kill an alembic command after this long; default 10 minutes. */
  timeoutMs?: number
}

/** One revision from `alembic history`. */
export interface AlembicRevision {
  id: string
  /** The revisions it revises: empty for the first one, two or more for a merge. */
  downRevisions: string[]
  /** Tags alembic prints: head, branchpoint, mergepoint, branch labels. */
  tags: string[]
  message: string
}

/** A downgrade target: '-N' (relative), a revision id (or a unique prefix of one), or 'base'. */
export type DowngradeTarget = string

export interface AlembicDriver {
  /** The database's revisions; empty at base. Fails when the database is at a revision the code lacks. */
  current(): Promise<string[]>
  heads(): Promise<string[]>
  /** All revisions, newest first, as `alembic history` prints them. */
  history(): Promise<AlembicRevision[]>
  /** Resolves a downgrade target to the revisions `current()` must show afterwards ([] for base). */
  resolveDowngrade(target: DowngradeTarget): Promise<string[]>
  /** Downgrades and checks that `current()` then equals the target; returns the new current. */
  downgrade(target: DowngradeTarget): Promise<string[]>
  /** Upgrades ('head', '+N' or a revision) and checks the result; returns the new current. */
  upgrade(target: string): Promise<string[]>
  /** The SQL `alembic downgrade --sql FROM:TO` renders (offline: nothing runs) — what --dry-run shows. */
  downgradeSql(from: string, to: DowngradeTarget): Promise<string>
  /** Refuses (UserError) when the project has several heads; returns heads and current. */
  preflight(): Promise<{ heads: string[]; current: string[] }>
  /** The database the project's env.py connects to with these options (found without connecting). */
  database(): Promise<AlembicDatabase | undefined>
}

export const DEFAULT_ALEMBIC = '/usr/bin/alembic'

const REVISION_ID = /^[A-Za-z0-9_]+$/
const TARGET = /^(base|-\d+|[A-Za-z0-9_]+)$/

/** Parses `alembic current` / `alembic heads` output: one `<rev> (tag) (tag)` per line; empty = base. */
export function parseRevisionLines(stdout: string): string[] {
  const out: string[] = []
  for (const raw of stdout.split('\n')) {
    const line = raw.trim()
    const m = /^([A-Za-z0-9_]+)((?:\s+\([^)]*\))*)$/.exec(line)
    if (m?.[1]) out.push(m[1])
  }
  return out
}

/** Parses `alembic history` output: `<down>[, <down>] -> <rev> (tags), <message>` per line, newest first. */
export function parseHistory(stdout: string): AlembicRevision[] {
  const out: AlembicRevision[] = []
  for (const raw of stdout.split('\n')) {
    const m = /^(.+?) -> ([A-Za-z0-9_]+)((?: \([^)]*\))*), ?(.*)$/.exec(raw.trim())
    if (!m?.[1] || !m[2]) continue
    const down = m[1]
      .split(',')
      .map(s => s.trim())
      .filter(s => s && s !== '<base>')
    const tags = [...(m[3] ?? '').matchAll(/\(([^)]*)\)/g)].map(t => t[1] ?? '')
    out.push({ id: m[2], downRevisions: down, tags, message: m[4] ?? '' })
  }
  return out
}

/** The interpreter named on a script's `#!` line (alembic's console script), if any. */
function shebangPython(file: string): string | undefined {
  try {
    const first = readFileSync(file, 'utf8').split('\n', 1)[0] ?? ''
    const m = /^#!\s*(\S+)(?:\s+(\S+))?/.exec(first)
    if (!m?.[1]) return undefined
    return m[1].endsWith('/env') ? m[2] : m[1]
  } catch {
    return undefined
  }
}

/** Prints the raw revision ids in the version table, including ones the scripts do not know. */
const RAW_CURRENT_PY = `
import json, sys
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.runtime.environment import EnvironmentContext
cfg = Config(sys.argv[1])
script = ScriptDirectory.from_config(cfg)
out = []
def fn(rev, context):
    out.extend(rev)
    return []
with EnvironmentContext(cfg, script, fn=fn, dont_mutate=True):
    script.run_env()
print("BACKOUT_ALEMBIC_CURRENT=" + json.dumps(list(out)))
`

/** The alembic executable: the one given, else $BACKOUT_ALEMBIC, else /usr/bin/alembic. */
export function alembicExecutable(alembicBin?: string): string {
  return alembicBin ?? process.env.BACKOUT_ALEMBIC ?? DEFAULT_ALEMBIC
}

/** The Python that runs an alembic executable: its `#!` line's, else /usr/bin/python3. */
export function alembicPython(alembicBin?: string): string {
  return shebangPython(alembicExecutable(alembicBin)) ?? '/usr/bin/python3'
}

export function createAlembic(options: AlembicOptions): AlembicDriver {
  const bin = alembicExecutable(options.alembicBin)
  const ini = options.config ?? 'alembic.ini'
  const cwd = options.projectDir
  const env = { ...process.env, PYTHONDONTWRITEBYTECODE: '1', ...options.env }
  const log = options.logger

  async function run(args: string[]): Promise<CommandResult> {
    log?.debug(`alembic ${args.join(' ')}`)
    return runCommand([bin, '-c', ini, ...args], {
      cwd,
      env,
      signal: options.signal,
      timeoutMs: options.timeoutMs ?? 600_000
    })
  }

  async function checked(args: string[]): Promise<string> {
    const res = await run(args)
    if (res.code !== 0)
      throw new OperationError(`alembic ${args.join(' ')} failed (exit ${res.code}): ${tail(res)}`)
    return res.stdout
  }

  const python = options.python ?? alembicPython(bin)

  async function rawCurrent(): Promise<string[]> {
    const res = await runCommand([python, '-c', RAW_CURRENT_PY, ini], { cwd, env, signal: options.signal })
    const line = res.stdout.split('\n').find(l => l.startsWith('BACKOUT_ALEMBIC_CURRENT='))
    if (res.code !== 0 || !line)
      throw new OperationError(`reading the alembic version table failed (exit ${res.code}): ${tail(res)}`)
    const parsed: unknown = JSON.parse(line.slice('BACKOUT_ALEMBIC_CURRENT='.length))
    return Array.isArray(parsed) ? parsed.map(String) : []
  }

  async function current(): Promise<string[]> {
    const res = await run(['current'])
    const unknown = /Can't locate revision identified by '([^']+)'/.exec(res.stderr + res.stdout)
    if (unknown?.[1]) throw unknownRevisionError(unknown[1])
    if (res.code !== 0) throw new OperationError(`alembic current failed (exit ${res.code}): ${tail(res)}`)
    const revs = parseRevisionLines(res.stdout)
    if (revs.length > 0) return revs
    // `alembic current` prints nothing both at base and (in some versions) for a revision it does not know.
    const raw = await rawCurrent()
    if (raw[0]) throw unknownRevisionError(raw[0])
    return []
  }

  function unknownRevisionError(rev: string): OperationError {
    return new OperationError(
      `the database is at alembic revision ${rev}, which the migrations in ${cwd} do not contain — the migration ran but this code did not deploy (VBRPG runbook, Scenario 2): run the downgrade from the release that has ${rev}, or restore the database from the backup taken before the deployment`,
      'version_mismatch'
    )
  }

  async function heads(): Promise<string[]> {
    return parseRevisionLines(await checked(['heads']))
  }

  async function history(): Promise<AlembicRevision[]> {
    return parseHistory(await checked(['history']))
  }

  function resolveId(id: string, revisions: readonly AlembicRevision[]): string {
    const exact = revisions.find(r => r.id === id)
    if (exact) return exact.id
    const matches = revisions.filter(r => r.id.startsWith(id))
    if (matches.length === 1 && matches[0]) return matches[0].id
    if (matches.length > 1)
      throw new UserError(
        `revision prefix ${id} matches ${matches.map(m => m.id).join(', ')} — give more characters of the revision id`
      )
    throw new UserError(`revision ${id} is not in ${cwd}'s migrations — check \`alembic history\` for the id`)
  }

  /** The revision `steps` below `from`; undefined means base. */
  function walkDown(from: string, steps: number, byId: Map<string, AlembicRevision>): string | undefined {
    let rev: string | undefined = from
    for (let i = 0; i < steps; i++) {
      if (rev === undefined)
        throw new UserError(
          `cannot go ${steps} revisions below ${from}: base comes first — use a smaller step or 'base'`
        )
      const r = byId.get(rev)
      if (!r) throw new OperationError(`revision ${rev} is missing from alembic history`)
      if (r.downRevisions.length > 1)
        throw new UserError(
          `${rev} merges ${r.downRevisions.join(' and ')}: "one below" is ambiguous — downgrade to an explicit revision`
        )
      rev = r.downRevisions[0]
    }
    return rev
  }

  function isAncestor(ancestor: string, of: string, byId: Map<string, AlembicRevision>): boolean {
    const seen = new Set<string>()
    const stack = [of]
    while (stack.length > 0) {
      const id = stack.pop() as string
      if (id === ancestor) return true
      if (seen.has(id)) continue
      seen.add(id)
      stack.push(...(byId.get(id)?.downRevisions ?? []))
    }
    return false
  }

  async function resolveDowngrade(target: DowngradeTarget): Promise<string[]> {
    if (!TARGET.test(target))
      throw new UserError(
        `downgrade target "${target}" is not '-N', 'base' or a revision id — pick one of those`
      )
    if (target === 'base') return []
    const [cur, revisions] = await Promise.all([current(), history()])
    const byId = new Map(revisions.map(r => [r.id, r]))
    if (cur.length === 0)
      throw new UserError(`the database is already at base — there is nothing to downgrade`)
    const rel = /^-(\d+)$/.exec(target)
    if (rel) {
      const steps = Number(rel[1])
      if (steps < 1) throw new UserError(`downgrade target ${target}: give a step of at least 1 ('-1')`)
      if (cur.length > 1 || !cur[0])
        throw new UserError(
          `the database is at several revisions (${cur.join(', ')}): ${target} is ambiguous — downgrade to an explicit revision`
        )
      const to = walkDown(cur[0], steps, byId)
      return to === undefined ? [] : [to]
    }
    const id = resolveId(target, revisions)
    if (!cur.every(c => isAncestor(id, c, byId)))
      throw new UserError(
        `revision ${id} is not at or below the database's current ${cur.join(', ')} — a downgrade only goes down; use upgrade, or pick an older revision`
      )
    return [id]
  }

  function sameSet(a: readonly string[], b: readonly string[]): boolean {
    return a.length === b.length && a.every(x => b.includes(x))
  }

  async function downgrade(target: DowngradeTarget): Promise<string[]> {
    const expected = await resolveDowngrade(target)
    const arg = expected[0] ?? 'base'
    if (expected.length > 1) throw new OperationError(`internal: downgrade resolved to several revisions`)
    log?.info(`alembic downgrade ${arg}${arg === target ? '' : ` (${target})`}`)
    const res = await run(['downgrade', arg])
    if (res.code !== 0) {
      const now = await current().catch(() => undefined)
      throw new OperationError(
        `alembic downgrade ${arg} failed (exit ${res.code}); the database is now at ${now ? fmt(now) : 'an unknown revision'}: ${tail(res)}`
      )
    }
    const after = await current()
    if (!sameSet(after, expected))
      throw new OperationError(
        `after alembic downgrade ${arg} the database is at ${fmt(after)}, not ${fmt(expected)} — check \`alembic history\` and the migration's downgrade()`
      )
    return after
  }

  async function upgrade(target: string): Promise<string[]> {
    if (!/^(head|heads|\+\d+|[A-Za-z0-9_]+)$/.test(target))
      throw new UserError(
        `upgrade target "${target}" is not 'head', '+N' or a revision id — pick one of those`
      )
    const [revisions, hs, cur] = await Promise.all([history(), heads(), current()])
    let expected: string[]
    if (target === 'head' || target === 'heads') expected = hs
    else if (target.startsWith('+')) {
      const byParent = new Map<string, string[]>()
      for (const r of revisions)
        for (const d of r.downRevisions.length > 0 ? r.downRevisions : ['<base>'])
          byParent.set(d, [...(byParent.get(d) ?? []), r.id])
      let rev = cur.length === 1 && cur[0] ? cur[0] : cur.length === 0 ? '<base>' : undefined
      if (rev === undefined)
        throw new UserError(
          `the database is at several revisions: ${target} is ambiguous — upgrade to a revision`
        )
      for (let i = 0; i < Number(target.slice(1)); i++) {
        const children: string[] = byParent.get(rev) ?? []
        if (children.length !== 1 || !children[0])
          throw new UserError(
            children.length === 0
              ? `cannot go ${target} from ${cur.join(', ') || 'base'}: the head comes first`
              : `${rev} branches into ${children.join(', ')}: ${target} is ambiguous — upgrade to a revision`
          )
        rev = children[0]
      }
      expected = [rev]
    } else expected = [resolveId(target, revisions)]
    const arg =
      target.startsWith('+') || target === 'head' || target === 'heads' ? target : (expected[0] ?? target)
    log?.info(`alembic upgrade ${arg}`)
    const res = await run(['upgrade', arg])
    if (res.code !== 0) {
      const after = await current().catch(() => undefined)
      throw new OperationError(
        `alembic upgrade ${arg} failed (exit ${res.code}); the database is now at ${after ? fmt(after) : 'an unknown revision'}: ${tail(res)}`
      )
    }
    const after = await current()
    if (!sameSet(after, expected))
      throw new OperationError(
        `after alembic upgrade ${arg} the database is at ${fmt(after)}, not ${fmt(expected)}`
      )
    return after
  }

  async function downgradeSql(from: string, to: DowngradeTarget): Promise<string> {
    if (!REVISION_ID.test(from)) throw new UserError(`--sql start "${from}" is not a revision id`)
    if (!TARGET.test(to)) throw new UserError(`--sql target "${to}" is not '-N', 'base' or a revision id`)
    const revisions = await history()
    const byId = new Map(revisions.map(r => [r.id, r]))
    const fromId = resolveId(from, revisions)
    let toArg = 'base'
    const rel = /^-(\d+)$/.exec(to)
    if (rel) toArg = walkDown(fromId, Number(rel[1]), byId) ?? 'base'
    else if (to !== 'base') {
      toArg = resolveId(to, revisions)
      if (!isAncestor(toArg, fromId, byId))
        throw new UserError(`revision ${toArg} is not below ${fromId} — a downgrade only goes down`)
    }
    const res = await run(['downgrade', '--sql', `${fromId}:${toArg}`])
    if (res.code !== 0)
      throw new OperationError(
        `alembic downgrade --sql ${fromId}:${toArg} could not render the SQL (exit ${res.code}): ${tail(res)}${
          /batch mode/.test(res.stderr + res.stdout)
            ? ' — on SQLite, give batch_alter_table() a copy_from table so the downgrade renders offline'
            : ''
        }`
      )
    return res.stdout
  }

  async function preflight(): Promise<{ heads: string[]; current: string[] }> {
    const hs = await heads()
    if (hs.length > 1)
      throw new UserError(
        `the migrations in ${cwd} have ${hs.length} heads (${hs.join(', ')}) — merge them first (\`alembic merge -m "merge heads" ${hs.join(' ')}\`) and deploy the merge, then roll back`,
        'multiple_heads'
      )
    if (hs.length === 0)
      throw new UserError(
        `no alembic revisions found in ${path.join(cwd, ini)}'s script location — check the project path`
      )
    return { heads: hs, current: await current() }
  }

  const database = (): Promise<AlembicDatabase | undefined> =>
    alembicDatabase({ projectDir: cwd, ini, python, env, signal: options.signal })

  return { current, heads, history, resolveDowngrade, downgrade, upgrade, downgradeSql, preflight, database }
}

function fmt(revs: readonly string[]): string {
  return revs.length === 0 ? 'base' : revs.join(', ')
}

function tail(res: CommandResult): string {
  const lines = (res.stderr + '\n' + res.stdout)
    .split('\n')
    .map(l => l.trim())
    .filter(l => l && !/^INFO\s+\[/.test(l) && !/^(File "|Traceback|\^+$|~+)/.test(l))
  return lines.slice(-4).join(' | ') || '(no output)'
}

/**
 * Compares the code's migration head with the database's current revision (the VBRPG runbook's Scenario 2:
 * the migration ran but the code did not deploy). Returns undefined when they match, else what is wrong and
 * what to do. With the history (from the newer of the two releases) it can tell which side is ahead.
 */
export function detectVersionMismatch(
  codeHead: string | readonly string[],
  dbCurrent: readonly string[],
  history?: readonly AlembicRevision[]
): string | undefined {
  const code = typeof codeHead === 'string' ? [codeHead] : [...codeHead]
  if (code.length === dbCurrent.length && code.every(c => dbCurrent.includes(c))) return undefined
  const db = fmt(dbCurrent)
  const want = fmt(code)
  if (history && code.length === 1 && dbCurrent.length === 1 && code[0] && dbCurrent[0]) {
    const byId = new Map(history.map(r => [r.id, r]))
    const below = (a: string, b: string): boolean => {
      const stack = [b]
      const seen = new Set<string>()
      while (stack.length > 0) {
        const id = stack.pop() as string
        if (id === a) return true
        if (seen.has(id)) continue
        seen.add(id)
        stack.push(...(byId.get(id)?.downRevisions ?? []))
      }
      return false
    }
    if (below(code[0], dbCurrent[0]))
      return `database is at ${db} but the code expects ${want}: the migration ran but the code did not deploy (Scenario 2) — downgrade the database to ${want} (\`alembic downgrade ${code[0]}\`, from the release that has ${db}), restart the service, then re-run the deployment so code and migrations go out together`
    if (below(dbCurrent[0], code[0]))
      return `database is at ${db} but the code expects ${want}: the code deployed but its migrations did not run — run \`alembic upgrade head\`, or roll the code back to the release matching ${db}`
  }
  return `database is at ${db} but the code expects ${want} — bring them together: downgrade the database to ${want} (Scenario 2: migration ran, code did not deploy) or deploy the code that matches ${db}`
}
