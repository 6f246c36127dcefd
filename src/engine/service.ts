import path from 'node:path'
import type { Color, Config } from '../core/config'
import type { Logger } from '../core/logger'
import { BackupStore } from '../drivers/backup-store'
import { expandedSecrets } from '../drivers/config-file'
import { field, probe, type HttpProbe } from '../drivers/http'
import { createNginx, type Nginx } from '../drivers/nginx'
import { passwordForms } from '../drivers/postgres/credentials'
import { createRuntime, type Runtime } from '../drivers/runtime'

/** The drivers for one service, built from its config. Tests build the same from a sandbox's config. */
export interface Service {
  config: Config
  nginx: Nginx
  runtime: Runtime
  store: BackupStore
  log: Logger
}

export function createService(config: Config, log: Logger): Service {
  for (const secret of [...secretsOf(config), ...expandedSecrets(config)]) log.mask(secret)
  return {
    config,
    nginx: createNginx(config.nginx),
    runtime: createRuntime(config, path.join(config.state.dir, 'logs')),
    store: new BackupStore(
      config.backups.dir,
      { key: config.backups.sealKey, file: path.join(config.state.dir, 'seal.key') },
      config.service
    ),
    log
  }
}

/** Values that must never be printed: the database password, the key that seals manifests. */
export function secretsOf(config: Config): string[] {
  const seal = config.backups.sealKey ? [config.backups.sealKey] : []
  if (config.database?.kind !== 'postgres') return seal
  return [...passwordForms(config.database.url), ...seal] // as written in the URL (encoded) and decoded
}

export function targetUrl(config: Config, color: Color): string {
  return config.targets[color].url ?? `http://${config.targets[color].upstream}`
}

/** Which target nginx's upstream file points at, or undefined when it points at neither. */
export function activeColor(service: Service): Color | undefined {
  const upstream = service.nginx.activeUpstream()
  if (upstream === service.config.targets.blue.upstream) return 'blue'
  if (upstream === service.config.targets.green.upstream) return 'green'
  return undefined
}

/** Which target answered a /health response: its `environment`, else its `version`. */
export function answeredBy(config: Config, res: HttpProbe): Color | undefined {
  const env = field(res.json, 'environment')
  if (env === 'blue' || env === 'green') return env
  const version = field(res.json, 'version')
  if (version === config.targets.blue.version) return 'blue'
  if (version === config.targets.green.version) return 'green'
  return undefined
}

/** GET the health endpoint through nginx, as users reach the service. */
export function probeThroughNginx(config: Config, signal?: AbortSignal): Promise<HttpProbe> {
  return probe(config.nginx.url + config.health.path, config.health.timeoutMs, signal)
}

/** GET a target's /status directly; ready when 2xx and overall_ready is true. */
export async function targetReady(
  config: Config,
  color: Color,
  signal?: AbortSignal
): Promise<{ ready: boolean; detail: string }> {
  const res = await probe(
    targetUrl(config, color) + config.health.statusPath,
    config.health.timeoutMs,
    signal
  )
  if (res.error) return { ready: false, detail: `${config.health.statusPath} unreachable: ${res.error}` }
  const overall = field(res.json, 'overall_ready')
  if (!res.ok) return { ready: false, detail: `${config.health.statusPath} answered HTTP ${res.status}` }
  if (overall !== true)
    return { ready: false, detail: `${config.health.statusPath} overall_ready is ${JSON.stringify(overall)}` }
  return { ready: true, detail: `overall_ready=true in ${Math.round(res.latencyMs)} ms` }
}
