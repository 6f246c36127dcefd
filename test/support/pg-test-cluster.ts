import { mkdtempSync, rmSync, chmodSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import {
  type Cluster,
  findPgBinDir,
  initCluster,
  startCluster,
  stopCluster
} from '../../src/drivers/postgres-cluster'
import { freePort } from './ports'

export interface TestCluster extends Cluster {
  root: string
  logFile: string
  stop(): Promise<void>
}

export const hasPostgres = findPgBinDir() !== undefined

/** A real PostgreSQL cluster in a temp dir on a free port; stop() removes it. */
export async function startTestCluster(settings: Record<string, string> = {}): Promise<TestCluster> {
  const root = mkdtempSync(path.join(tmpdir(), 'backout-pg-'))
  chmodSync(root, 0o755)
  const port = await freePort()
  const cluster = await initCluster({ dataDir: path.join(root, 'data'), port, settings })
  const logFile = path.join(root, 'postgres.log')
  await startCluster(cluster, logFile)
  return {
    ...cluster,
    root,
    logFile,
    async stop() {
      await stopCluster(cluster, 'immediate')
      rmSync(root, { recursive: true, force: true })
    }
  }
}
