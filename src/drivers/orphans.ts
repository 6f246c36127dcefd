import { readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { isAlive } from './process'
import { sleep } from './sleep'

/**
 * The processes whose command line names `dir` or a path inside it (a pg_basebackup -D <dir>/.base, a tar or zstd
 * writing into it): what a killed snapshot leaves running. This process is never among them.
 */
export function processesUsing(dir: string): number[] {
  const root = path.resolve(dir)
  const pids: number[] = []
  let entries: string[]
  try {
    entries = readdirSync('/proc')
  } catch {
    return []
  }
  for (const name of entries) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue
    let args: string[]
    try {
      args = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0')
    } catch {
      continue
    }
    if (args.some(a => a === root || a.includes(`${root}/`) || a.endsWith(`=${root}`)))
      pids.push(Number(name))
  }
  return pids
}

/** Stops these processes: SIGTERM (and SIGCONT, should one be stopped), then SIGKILL after graceMs. Returns them. */
export async function stopProcesses(pids: readonly number[], graceMs = 5000): Promise<number[]> {
  const signal = (pid: number, sig: NodeJS.Signals): void => {
    try {
      process.kill(pid, sig)
    } catch {
      /* already gone */
    }
  }
  for (const pid of pids) {
    signal(pid, 'SIGTERM')
    signal(pid, 'SIGCONT')
  }
  const deadline = Date.now() + graceMs
  while (pids.some(isAlive) && Date.now() < deadline) await sleep(100)
  for (const pid of pids.filter(isAlive)) signal(pid, 'SIGKILL')
  const killed = Date.now() + 2000
  while (pids.some(isAlive) && Date.now() < killed) await sleep(50)
  return [...pids]
}
