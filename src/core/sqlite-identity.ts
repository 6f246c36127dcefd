/**
 * What ties a SQLite backup to the database it came from, and the decision whether a backup may replace the
 * configured database.
 *
 * The choice, and why: a schema changes with every migration, so neither the schema fingerprint nor the table list
 * can say "same database" — a backup from an older revision of the same file must pass. What survives migrations
 * (alembic's batch mode rebuilds tables), VACUUM, the online backup API and the restore itself is the file header.
 * So the first full snapshot of a database whose `PRAGMA application_id` is 0 (unused, as in almost every
 * application's database) stores a random backout identity there: 0x42 in the top byte, 24 random bits below.
 * Like PostgreSQL's system identifier, it then travels with every copy: the backups of this database carry it, a
 * database on another host (or another application's file) has another one, and a backup copied in from there is
 * refused. Where the identity cannot decide — a backup taken before backout marked the database, an application
 * that uses application_id itself, or a live file backout never marked (re-created after a disaster) — a backup
 * that shares no table with the live database (migration bookkeeping aside) is refused: another application's
 * database. The path, table list and schema fingerprint are recorded too, for the operator.
 */

export interface SqliteIdentity {
  /** The database file's absolute path when captured. */
  path: string
  /** PRAGMA application_id: backout's identity (see isBackoutId), the application's own, or 0. */
  applicationId: number
  /** The user tables, sorted. */
  tables: string[]
  /** sha256 of the schema (sqlite_schema's type, name, table and SQL, sorted): differs after any migration. */
  schemaSha256: string
}

/** backout's identities have 0x42 in the top byte. */
export const BACKOUT_ID_TAG = 0x42

export function isBackoutId(applicationId: number): boolean {
  return applicationId !== 0 && applicationId >>> 24 === BACKOUT_ID_TAG
}

/** A new random backout identity, from 24 random bits (never 0 below the tag). */
export function backoutId(random24: number): number {
  const low = random24 & 0xffffff || 1
  return ((BACKOUT_ID_TAG << 24) | low) >>> 0
}

export function formatId(applicationId: number): string {
  return `0x${(applicationId >>> 0).toString(16).padStart(8, '0')}`
}

/** Tables that migration tools keep in every database: sharing them says nothing. */
const BOOKKEEPING = new Set(['alembic_version', 'schema_migrations'])

/**
 * Why the backup (its file's identity, and what its manifest recorded) must not replace the live database;
 * undefined when it may. `live` is undefined when the configured file does not exist (nothing to compare with).
 */
export function foreignSqliteBackup(
  backup: SqliteIdentity,
  live: SqliteIdentity | undefined,
  recorded?: SqliteIdentity
): string | undefined {
  const from = recorded ? ` (captured from ${recorded.path})` : ''
  if (recorded && recorded.applicationId !== backup.applicationId)
    return (
      `its file's application_id is ${formatId(backup.applicationId)}, the backup recorded ${formatId(recorded.applicationId)}` +
      ' — another file was put in its place'
    )
  if (!live) return undefined
  const [b, l] = [backup.applicationId, live.applicationId]
  if (b !== 0 && l !== 0 && b !== l)
    return (
      `it holds database ${formatId(b)}${from}, and the configured database ${live.path} is ${formatId(l)} ` +
      `(PRAGMA application_id${isBackoutId(b) || isBackoutId(l) ? ', the identity backout stored in each file' : ''}): ` +
      'it is a backup of another database — another application, or another host'
    )
  if (b !== 0 && b === l) return undefined
  const mine = new Set(live.tables.filter(t => !BOOKKEEPING.has(t)))
  const theirs = backup.tables.filter(t => !BOOKKEEPING.has(t))
  if (mine.size > 0 && theirs.length > 0 && !theirs.some(t => mine.has(t)))
    return (
      `it shares no table with the configured database ${live.path}${from}: it holds ${list(theirs)}, the database ` +
      `holds ${list([...mine])} — a backup of another application's database`
    )
  return undefined
}

function list(tables: readonly string[]): string {
  return tables.length > 5
    ? `${tables.slice(0, 5).join(', ')} and ${tables.length - 5} more`
    : tables.join(', ')
}
