import { UserError } from './errors'

/**
 * Pure decisions for rolling SQL migrations back (the SpaceTime runbook's Method 1: one
 * `migrations/rollback/<version>_<name>_down.sql` per version) and for comparing schemas (the VBRPG
 * runbook's prevention check). No I/O: the drivers read files and talk to databases.
 */

/** One migration script on disk: `105_add_user_preferences_down.sql` → version 105, name add_user_preferences. */
export interface MigrationScript {
  version: number
  name: string
  /** The file's path, as the driver found it. */
  file: string
}

const DOWN_NAME = /^(\d+)_([A-Za-z0-9][A-Za-z0-9_.-]*)_down\.sql$/
const UP_NAME = /^(\d+)_([A-Za-z0-9][A-Za-z0-9_.-]*)\.sql$/

/** Parses a down script's file name (`<version>_<name>_down.sql`); undefined for anything else. */
export function parseDownScriptName(fileName: string): { version: number; name: string } | undefined {
  const m = DOWN_NAME.exec(fileName)
  if (!m?.[1] || !m[2]) return undefined
  return { version: Number(m[1]), name: m[2] }
}

/** Parses an up script's file name (`<version>_<name>.sql`, not a down script); undefined for anything else. */
export function parseUpScriptName(fileName: string): { version: number; name: string } | undefined {
  if (DOWN_NAME.test(fileName)) return undefined
  const m = UP_NAME.exec(fileName)
  if (!m?.[1] || !m[2]) return undefined
  return { version: Number(m[1]), name: m[2] }
}

/** What rolling back from `current` to `target` takes. */
export interface DownPlan {
  current: number
  target: number
  /** The down scripts to run, newest version first. */
  steps: MigrationScript[]
  /** Versions to roll back that have no down script, newest first. Non-empty: Method 1 cannot be used. */
  missing: number[]
}

/** Without the applied list, versions are assumed consecutive; a larger span than this needs the list. */
const MAX_CONSECUTIVE_SPAN = 1000

/**
 * Plans a rollback from `currentVersion` down to `targetVersion` (which stays applied).
 *
 * `applied` — the versions in schema_migrations — names exactly which versions to roll back; without it the
 * versions are taken to be consecutive integers, as in the runbook's 105 → 104.
 */
export function planDown(
  currentVersion: number,
  targetVersion: number,
  scripts: readonly MigrationScript[],
  applied?: readonly number[]
): DownPlan {
  for (const [label, v] of [
    ['current version', currentVersion],
    ['target version', targetVersion]
  ] as const) {
    if (!Number.isSafeInteger(v) || v < 0)
      throw new UserError(`${label} ${v} is not a migration version — versions are non-negative integers`)
  }
  if (targetVersion > currentVersion)
    throw new UserError(
      `target schema version ${targetVersion} is newer than the current ${currentVersion} — a rollback only goes down; pick an older target`
    )

  let versions: number[]
  if (applied) {
    versions = [...new Set(applied)].filter(v => v > targetVersion && v <= currentVersion)
  } else {
    if (currentVersion - targetVersion > MAX_CONSECUTIVE_SPAN)
      throw new UserError(
        `versions ${targetVersion}..${currentVersion} span more than ${MAX_CONSECUTIVE_SPAN} numbers — pass the applied versions from schema_migrations instead of assuming consecutive ones`
      )
    versions = []
    for (let v = targetVersion + 1; v <= currentVersion; v++) versions.push(v)
  }
  versions.sort((a, b) => b - a)

  const byVersion = new Map<number, MigrationScript>()
  for (const s of scripts) {
    if (!versions.includes(s.version)) continue
    const other = byVersion.get(s.version)
    if (other)
      throw new UserError(`two down scripts for version ${s.version}: ${other.file} and ${s.file} — keep one`)
    byVersion.set(s.version, s)
  }
  const steps: MigrationScript[] = []
  const missing: number[] = []
  for (const v of versions) {
    const s = byVersion.get(v)
    if (s) steps.push(s)
    else missing.push(v)
  }
  return { current: currentVersion, target: targetVersion, steps, missing }
}

/** A human line for a plan, e.g. for --dry-run and logs. */
export function describeDownPlan(plan: DownPlan): string {
  if (plan.steps.length === 0 && plan.missing.length === 0)
    return `schema is at ${plan.current}, the target is ${plan.target}: nothing to roll back`
  const base = `roll schema back ${plan.current} → ${plan.target}: ${[
    ...plan.steps.map(s => s.version),
    ...plan.missing
  ]
    .sort((a, b) => b - a)
    .join(', ')}`
  return plan.missing.length > 0
    ? `${base}; no down script for ${plan.missing.join(', ')} — restore the database from the target backup instead (Method 2)`
    : base
}

/** One statement of a SQL script, with its place in the text. */
export interface SqlStatement {
  text: string
  start: number
  end: number
}

/**
 * Splits SQL into statements at top-level semicolons, skipping `--` and (nested) block comments, quoted
 * strings and identifiers, E'' strings and dollar-quoted bodies. Good enough to find transaction control in a
 * migration script; the script itself is sent to the server as written.
 */
export function splitSqlStatements(sql: string): SqlStatement[] {
  const out: SqlStatement[] = []
  let start = 0
  let i = 0
  let clean = ''
  const n = sql.length
  const push = (end: number): void => {
    const text = clean.trim()
    if (text) out.push({ text, start, end })
    clean = ''
  }
  const take = (to: number): void => {
    clean += sql.slice(i, to)
    i = to
  }
  while (i < n) {
    const c = sql[i]
    const next = sql[i + 1]
    if (c === '-' && next === '-') {
      const nl = sql.indexOf('\n', i)
      i = nl === -1 ? n : nl + 1
      clean += ' '
    } else if (c === '/' && next === '*') {
      let depth = 1
      i += 2
      while (i < n && depth > 0) {
        if (sql[i] === '/' && sql[i + 1] === '*') {
          depth++
          i += 2
        } else if (sql[i] === '*' && sql[i + 1] === '/') {
          depth--
          i += 2
        } else i++
      }
      clean += ' '
    } else if (c === "'" || c === '"') {
      const escapes = c === "'" && /[eE]/.test(sql[i - 1] ?? '') && !/[A-Za-z0-9_]/.test(sql[i - 2] ?? '')
      let j = i + 1
      while (j < n) {
        if (escapes && sql[j] === '\\') j += 2
        else if (sql[j] === c && sql[j + 1] === c) j += 2
        else if (sql[j] === c) {
          j++
          break
        } else j++
      }
      take(Math.min(j, n))
    } else if (c === '$') {
      const m = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i, i + 64))
      if (m && !/[A-Za-z0-9_]/.test(sql[i - 1] ?? '')) {
        const tag = m[0]
        const close = sql.indexOf(tag, i + tag.length)
        take(close === -1 ? n : close + tag.length)
      } else take(i + 1)
    } else if (c === ';') {
      take(i + 1)
      push(i)
      start = i
    } else take(i + 1)
  }
  push(n)
  return out
}

const BEGIN_STMT =
  /^(BEGIN|START\s+TRANSACTION)(\s+(WORK|TRANSACTION)\b.*|\s+ISOLATION\b.*|\s+READ\b.*)?\s*;?$/is
const COMMIT_STMT = /^(COMMIT|END)(\s+(WORK|TRANSACTION))?\s*;?$/is
const TX_CONTROL =
  /^(BEGIN|START\s+TRANSACTION|COMMIT|END|ROLLBACK(?!\s+TO\b)|ABORT|PREPARE\s+TRANSACTION|COMMIT\s+PREPARED)\b/i

/** A down script ready to run inside backout's own transaction. */
export interface PreparedMigrationScript {
  /** The SQL to run between backout's BEGIN and COMMIT. */
  body: string
  /** True when the script's own leading BEGIN; and trailing COMMIT; were taken off. */
  strippedTransaction: boolean
}

/**
 * Makes a down script safe to run in one transaction per version: a leading `BEGIN;` and a trailing
 * `COMMIT;` (as in the runbook's example) are taken off, because backout opens and commits the transaction
 * itself — after checking that the version's schema_migrations row is gone. Any other transaction control
 * (a COMMIT in the middle, ROLLBACK) would break that promise, so the script is refused before anything runs.
 */
export function prepareMigrationScript(sql: string, where: string): PreparedMigrationScript {
  const statements = splitSqlStatements(sql)
  let from = 0
  let to = sql.length
  let stripped = false
  const first = statements[0]
  const last = statements[statements.length - 1]
  let inner = statements
  if (first && last && statements.length >= 2 && BEGIN_STMT.test(first.text) && COMMIT_STMT.test(last.text)) {
    from = first.end
    to = last.start
    stripped = true
    inner = statements.slice(1, -1)
  } else if (first && BEGIN_STMT.test(first.text)) {
    throw new UserError(
      `${where}: starts with ${first.text.replace(/;$/, '')} but does not end with COMMIT — end it with COMMIT; or drop the BEGIN (backout runs each version in its own transaction)`
    )
  }
  const control = inner.find(s => TX_CONTROL.test(s.text))
  if (control)
    throw new UserError(
      `${where}: contains "${control.text.slice(0, 40)}" — a migration script must not control its transaction (backout runs each version in one transaction); remove it`
    )
  if (inner.length === 0)
    throw new UserError(`${where}: has no SQL statements — write the migration or delete the file`)
  const body = (stripped ? sql.slice(from, to) : sql).replace(/^\s*\n/, '').replace(/\s+$/, '')
  return { body, strippedTransaction: stripped }
}

// ---------------------------------------------------------------------------------------------------------
// Schema comparison (prevention: upgrade → downgrade one → upgrade must give the same schema)

export interface SchemaColumn {
  name: string
  type: string
  notNull: boolean
  default: string | null
  primaryKey: boolean
}

export interface SchemaIndex {
  /** Empty for indexes the database names itself (SQLite's sqlite_autoindex_*): those compare by definition. */
  name: string
  /** What the index is: unique flag and columns, or the database's own definition text. */
  definition: string
}

export interface SchemaTable {
  name: string
  columns: SchemaColumn[]
  indexes: SchemaIndex[]
  /** Foreign keys and other constraints, each as a definition string. */
  constraints: string[]
}

export interface SchemaModel {
  tables: SchemaTable[]
}

/**
 * The differences between two schemas, as sentences ("game_rooms: index ix_game_rooms_host_player_id is
 * missing after"); empty when they are the same. Column order and the text a database stored for a
 * CREATE TABLE are ignored — batch migrations rewrite both without changing the schema.
 */
export function compareSchemas(before: SchemaModel, after: SchemaModel): string[] {
  const diffs: string[] = []
  const a = new Map(before.tables.map(t => [t.name, t]))
  const b = new Map(after.tables.map(t => [t.name, t]))
  for (const name of sortedUnion(a.keys(), b.keys())) {
    const ta = a.get(name)
    const tb = b.get(name)
    if (!tb) {
      diffs.push(`table ${name} is missing after`)
      continue
    }
    if (!ta) {
      diffs.push(`table ${name} is new after`)
      continue
    }
    const ca = new Map(ta.columns.map(c => [c.name, c]))
    const cb = new Map(tb.columns.map(c => [c.name, c]))
    for (const col of sortedUnion(ca.keys(), cb.keys())) {
      const x = ca.get(col)
      const y = cb.get(col)
      if (!y) diffs.push(`${name}: column ${col} is missing after`)
      else if (!x) diffs.push(`${name}: column ${col} is new after`)
      else {
        const fields = (['type', 'notNull', 'default', 'primaryKey'] as const).filter(f => x[f] !== y[f])
        for (const f of fields)
          diffs.push(`${name}.${col}: ${f} was ${JSON.stringify(x[f])}, is ${JSON.stringify(y[f])} after`)
      }
    }
    const ia = indexKeys(ta.indexes)
    const ib = indexKeys(tb.indexes)
    for (const k of sortedUnion(ia.keys(), ib.keys())) {
      const x = ia.get(k)
      const y = ib.get(k)
      if (x === undefined) diffs.push(`${name}: index ${k} is new after`)
      else if (y === undefined) diffs.push(`${name}: index ${k} is missing after`)
      else if (x !== y) diffs.push(`${name}: index ${k} was ${x}, is ${y} after`)
    }
    const ka = new Set(ta.constraints)
    const kb = new Set(tb.constraints)
    for (const k of [...ka].filter(k => !kb.has(k)).sort())
      diffs.push(`${name}: constraint ${k} is missing after`)
    for (const k of [...kb].filter(k => !ka.has(k)).sort())
      diffs.push(`${name}: constraint ${k} is new after`)
  }
  return diffs
}

/** Named indexes by name; unnamed ones by their definition (numbered when the same one appears twice). */
function indexKeys(indexes: readonly SchemaIndex[]): Map<string, string> {
  const out = new Map<string, string>()
  for (const ix of indexes) {
    if (ix.name) out.set(ix.name, ix.definition)
    else {
      let key = `(${ix.definition})`
      for (let i = 2; out.has(key); i++) key = `(${ix.definition}) #${i}`
      out.set(key, ix.definition)
    }
  }
  return out
}

function sortedUnion(a: Iterable<string>, b: Iterable<string>): string[] {
  return [...new Set([...a, ...b])].sort()
}
