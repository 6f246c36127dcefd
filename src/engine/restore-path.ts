import { UserError, messageOf } from '../core/errors'
import type { BackupInfo } from '../drivers/backup-store'
import { clusterDifferences, listClusterDatabases } from '../drivers/postgres/cluster-contents'
import { clusterPid, type Cluster } from '../drivers/postgres-cluster'

/**
 * Which way a PostgreSQL restore goes, decided before anything stops and again right before the restore. A base
 * backup restores the whole cluster: every database in it goes back to the backup. That is allowed only when the
 * live cluster holds nothing but what the backup captured (its other databases the same ones, unchanged since);
 * otherwise the configured database alone is restored from the dump (logical), and a point in time (which needs
 * the whole-cluster path) is refused. A backup that does not record its databases (taken by an older backout)
 * counts as unknown: logical.
 */

export interface RestorePath {
  method: 'physical' | 'logical'
  /** The databases the restore replaces. */
  replaces: string[]
  /** Why this path, for the plan and the run record. */
  why: string
}

const decided = new Map<string, RestorePath>()

/** The path decided last for this backup (by the pre-flight check), if any. */
export function decidedRestorePath(backup: BackupInfo): RestorePath | undefined {
  return decided.get(backup.dir)
}

export async function decideRestorePath(options: {
  backup: BackupInfo
  /** The configured database (the one asked to be restored). */
  database: string
  url: string
  cluster?: Cluster
  toTime?: string
}): Promise<RestorePath> {
  const { backup, database, cluster } = options
  const base = backup.manifest.database?.base
  const logical = (why: string): RestorePath => ({ method: 'logical', replaces: [database], why })
  let route: RestorePath
  if (!base || !cluster) route = logical(base ? 'the base backup is not usable here' : 'no base backup')
  else if (!base.databases)
    route = logical(
      `backup ${backup.id} does not record which databases its base backup holds (taken by an older backout), ` +
        'so a whole-cluster restore could replace databases it was not asked to'
    )
  else if (!clusterPid(cluster.dataDir))
    route = logical("the server is not running: its databases cannot be compared with the backup's")
  else {
    let differences: string[]
    try {
      differences = clusterDifferences(base.databases, await listClusterDatabases(options.url), database)
    } catch (e) {
      differences = [`the live databases cannot be listed (${messageOf(e)})`]
    }
    const others = base.databases.map(d => d.name).filter(n => n !== database)
    route = differences.length
      ? logical(
          `a whole-cluster restore would also replace what it was not asked to: ${differences.join('; ')}`
        )
      : {
          method: 'physical',
          replaces: [database, ...others],
          why: `the cluster holds nothing but what the backup captured (${others.length ? `${others.join(', ')} unchanged since` : 'no other database'})`
        }
  }
  decided.set(backup.dir, route)
  if (options.toTime && base && cluster && route.method === 'logical')
    throw new UserError(
      `--to-time needs a whole-cluster (physical) restore, which would not be safe here: ${route.why}. ` +
        `Nothing was changed — restore without --to-time (database ${database} alone, from the dump), or move the ` +
        'other databases to their own cluster',
      'restore_scope'
    )
  return route
}

/** The plan's words for a path: which way, which databases it replaces, and why. */
export function restorePathText(route: RestorePath): string {
  return route.method === 'physical'
    ? `restore path: whole cluster (physical), replaces databases ${route.replaces.join(', ')} — ${route.why}`
    : `restore path: logical restore of database ${route.replaces.join(', ')} alone — ${route.why}`
}
