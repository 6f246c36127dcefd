import { Client } from 'pg'

/**
 * What a PostgreSQL cluster holds, database by database: recorded when a base backup is taken, compared with the
 * live cluster before a restore. A base backup restores the WHOLE cluster, so it may replace the live one only when
 * every other database is still exactly as the backup captured it; otherwise only the configured database may be
 * restored (logically). "Exactly" is judged by what PostgreSQL tracks cheaply: the same databases (name and oid),
 * the same size on disk, and no rows written since (pg_stat_database's inserted + updated + deleted counters).
 */

export interface ClusterDatabase {
  name: string
  /** The database's oid: a database dropped and re-created under the same name gets a new one. */
  oid: string
  /** pg_database_size() */
  bytes: number
  /** tup_inserted + tup_updated + tup_deleted since the statistics were last reset (absent: no statistics yet). */
  writes?: number
}

/** The databases of the cluster `url` points at (template0, which nobody connects to, left out). */
export async function listClusterDatabases(url: string): Promise<ClusterDatabase[]> {
  const client = new Client({ connectionString: url, connectionTimeoutMillis: 10_000 })
  client.on('error', () => undefined)
  await client.connect()
  try {
    const res = await client.query<{
      name: string
      oid: string
      bytes: string | null
      writes: string | null
    }>(
      `SELECT d.datname AS name, d.oid::text AS oid,
              CASE WHEN has_database_privilege(d.oid, 'CONNECT') THEN pg_database_size(d.oid)::text END AS bytes,
              (s.tup_inserted + s.tup_updated + s.tup_deleted)::text AS writes
         FROM pg_database d LEFT JOIN pg_stat_database s ON s.datid = d.oid
        WHERE d.datallowconn ORDER BY d.datname`
    )
    return res.rows.map(r => ({
      name: r.name,
      oid: r.oid,
      bytes: Number(r.bytes ?? -1),
      ...(r.writes !== null ? { writes: Number(r.writes) } : {})
    }))
  } finally {
    await client.end().catch(() => undefined)
  }
}

/**
 * How much a database's size may move with no row written: a restart deletes its relation-cache init file
 * (pg_internal.init, ~160 kB) and the first connection writes it again. Only tolerated when the write counters
 * prove nothing was written.
 */
const SIZE_NOISE = 1024 * 1024

function sameWrites(a: ClusterDatabase, b: ClusterDatabase): boolean {
  return a.writes !== undefined && a.writes === b.writes
}

/**
 * Why the live cluster holds more than the backup captured, apart from `configured` (the database being restored):
 * one line per database created, dropped, re-created, resized or written to since — or whose statistics were reset,
 * so that changes cannot be ruled out. Empty: a whole-cluster restore replaces only `configured`'s changes.
 */
export function clusterDifferences(
  recorded: readonly ClusterDatabase[],
  live: readonly ClusterDatabase[],
  configured: string
): string[] {
  const out: string[] = []
  const then = new Map(recorded.map(d => [d.name, d]))
  const now = new Map(live.map(d => [d.name, d]))
  for (const d of live) {
    if (d.name === configured) continue
    const r = then.get(d.name)
    if (!r) out.push(`database "${d.name}" was created after the backup`)
    else if (r.oid !== d.oid) out.push(`database "${d.name}" was dropped and re-created after the backup`)
    else if (r.writes !== undefined && d.writes !== undefined && d.writes > r.writes)
      out.push(`database "${d.name}" was written to since the backup (${d.writes - r.writes} rows changed)`)
    else if (r.bytes !== d.bytes && !(sameWrites(r, d) && Math.abs(r.bytes - d.bytes) <= SIZE_NOISE))
      out.push(`database "${d.name}" changed since the backup (${r.bytes} bytes then, ${d.bytes} now)`)
    else if (r.writes !== undefined && !sameWrites(r, d))
      out.push(
        `database "${d.name}": its statistics were reset since the backup, so changes cannot be ruled out`
      )
  }
  for (const r of recorded)
    if (r.name !== configured && !now.has(r.name))
      out.push(
        `database "${r.name}" was dropped after the backup (a whole-cluster restore would bring it back)`
      )
  return out
}
