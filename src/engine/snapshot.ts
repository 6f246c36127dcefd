import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { formatBackupId } from '../core/run-record'
import type { BackupInfo } from '../drivers/backup-store'
import { activeColor, answeredBy, probeThroughNginx, type Service } from './service'

const sleep = (ms: number): Promise<void> => new Promise(r => setTimeout(r, ms))

/** The path a captured config file takes inside a backup: config/ + its absolute path. */
export function configEntryPath(file: string): string {
  return path.join('config', path.resolve(file).replace(/^\/+/, ''))
}

/**
 * Takes a backup of the service as it is now: the state of both targets (containers.json), the versions
 * (images.txt), every config file and the nginx upstream, timestamp.txt, and manifest.json last.
 * A safety backup (taken before any rollback) is named rollback-safety-<id> and recorded in
 * state/last_safety_backup.
 */
export async function takeSnapshot(service: Service, options: { safety: boolean }): Promise<BackupInfo> {
  const { config, runtime, store, nginx } = service
  let now = new Date()
  let id = `${options.safety ? 'rollback-safety-' : ''}${formatBackupId(now)}`
  // Ids have one-second resolution: wait for the next second rather than collide.
  while (existsSync(store.pathOf(id)) || existsSync(`${store.pathOf(id)}.partial`)) {
    await sleep(1000 - (Date.now() % 1000) + 5)
    now = new Date()
    id = `${options.safety ? 'rollback-safety-' : ''}${formatBackupId(now)}`
  }
  const writer = store.begin(id)
  try {
    const live = await probeThroughNginx(config)
    const liveColor = answeredBy(config, live) ?? activeColor(service)
    const state = {
      runtime: runtime.kind,
      active: activeColor(service) ?? null,
      upstream: nginx.activeUpstream() ?? null,
      targets: {
        blue: { version: config.targets.blue.version, ...(await runtime.state('blue')) },
        green: { version: config.targets.green.version, ...(await runtime.state('green')) }
      }
    }
    writer.writeText('containers.json', JSON.stringify(state, null, 2) + '\n')
    writer.writeText(
      'images.txt',
      (['blue', 'green'] as const).map(c => `${config.service}-${c}:${config.targets[c].version}`).join('\n') + '\n'
    )
    writer.writeText('timestamp.txt', `${Math.floor(now.getTime() / 1000)}\n`)
    for (const file of [...config.configFiles, config.nginx.upstreamFile]) {
      if (existsSync(file)) writer.copyIn(configEntryPath(file), file)
    }
    const info = await writer.commit({
      service: config.service,
      kind: options.safety ? 'safety' : 'snapshot',
      versions: {
        live: liveColor ? config.targets[liveColor].version : undefined,
        blue: config.targets.blue.version,
        green: config.targets.green.version
      }
    })
    if (options.safety) {
      mkdirSync(config.state.dir, { recursive: true })
      writeFileSync(path.join(config.state.dir, 'last_safety_backup'), `${info.dir}\n`)
    }
    return info
  } catch (e) {
    writer.abort()
    throw e
  }
}
