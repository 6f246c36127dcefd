/**
 * Runs one physicalRestore in its own process, so that a test can have it killed (BACKOUT_TEST_KILL_BEFORE_RENAME,
 * BACKOUT_TEST_KILL_AT) like an operator's Ctrl-C or the OOM killer would. Argument: JSON of the options below.
 */
import { physicalRestore } from '../../src/drivers/postgres-backup'
import { describeCluster } from '../../src/drivers/postgres-cluster'

interface ChildOptions {
  dataDir: string
  port: number
  binDir: string
  logFile: string
  backupDir: string
  consumeBackupDir?: boolean
  walArchiveDir?: string
  targetTime?: string
  verifyWal?: boolean
}

async function main(): Promise<void> {
  const o = JSON.parse(process.argv[2] ?? '{}') as ChildOptions
  const cluster = describeCluster({ dataDir: o.dataDir, port: o.port }, o.binDir)
  const res = await physicalRestore({ ...o, cluster })
  process.stdout.write(JSON.stringify(res) + '\n')
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`)
  process.exit(1)
})
