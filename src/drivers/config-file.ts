import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { parse as parseYaml, YAMLParseError } from 'yaml'
import { type Config, parseConfig } from '../core/config'
import { UserError } from '../core/errors'

/** Where the config comes from: --config, else $BACKOUT_CONFIG, else ./backout.yml. */
export function configPath(explicit?: string, env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(explicit ?? env.BACKOUT_CONFIG ?? 'backout.yml')
}

/** Reads, parses and validates backout.yml; relative paths in it are taken from the file's directory. */
export function loadConfig(file: string): Config {
  if (!existsSync(file))
    throw new UserError(
      `config file ${file} does not exist — create it (see docs/config.md), pass --config FILE, ` +
        'or set BACKOUT_CONFIG; `backout sandbox up --dir DIR` writes a working example',
      'bad_config'
    )
  let raw: unknown
  try {
    raw = parseYaml(readFileSync(file, 'utf8'))
  } catch (e) {
    const where = e instanceof YAMLParseError && e.linePos ? ` at line ${e.linePos[0].line}` : ''
    throw new UserError(
      `${file} is not valid YAML${where}: ${e instanceof Error ? e.message.split('\n')[0] : String(e)} — fix the syntax`,
      'bad_config'
    )
  }
  const expanded: string[] = []
  const config = resolvePaths(
    parseConfig(expandEnvDeep(raw, [], process.env, expanded), file),
    path.dirname(file)
  )
  expandedValues.set(config, expanded)
  return config
}

const expandedValues = new WeakMap<Config, readonly string[]>()

/**
 * The values ${VAR}s were replaced by in a config loaded by loadConfig: each is treated as a secret (masked in every
 * log), except values of fewer than 4 characters, which would blank out every number in the logs.
 */
export function expandedSecrets(config: Config): readonly string[] {
  return (expandedValues.get(config) ?? []).filter(v => v.length >= 4)
}

/**
 * ${VAR} expanded in every string value of the parsed YAML — arrays and nested objects included (keys are left as
 * they are). database.url takes the value URL-encoded (a password with @ or / stays one password). Every value that
 * replaced a ${VAR} is pushed to `found`.
 */
export function expandEnvDeep(
  value: unknown,
  keyPath: readonly (string | number)[],
  env: NodeJS.ProcessEnv,
  found: string[]
): unknown {
  const key = keyPath.length ? keyPath.join('.') : '(top level)'
  if (typeof value === 'string') {
    const encode = key === 'database.url' ? encodeURIComponent : (v: string): string => v
    return expandEnv(value, key, env, v => {
      const out = encode(v)
      found.push(...(out === v ? [v] : [v, out]))
      return out
    })
  }
  if (Array.isArray(value)) return value.map((v, i) => expandEnvDeep(v, [...keyPath, i], env, found))
  if (value && typeof value === 'object')
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, expandEnvDeep(v, [...keyPath, k], env, found)])
    )
  return value
}

/**
 * ${NAME} in a value comes from the environment, so secrets stay out of the file (the password is masked
 * in every log). A variable that is not set is an error, never an empty string.
 */
export function expandEnv(
  value: string,
  key: string,
  env: NodeJS.ProcessEnv = process.env,
  encode: (v: string) => string = encodeURIComponent
): string {
  return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_, name: string) => {
    const v = env[name]
    if (v === undefined)
      throw new UserError(
        `${key} uses \${${name}}, but ${name} is not set — export it (or put the value in the file)`,
        'bad_config'
      )
    return encode(v)
  })
}

/** backups.sealKey (its ${VAR} already expanded): at least 32 characters, so that it cannot be guessed. */
function sealKey(key: string | undefined): string | undefined {
  if (key === undefined) return undefined
  if (key.length < 32)
    throw new UserError(
      `backups.sealKey is ${key.length} characters long, expected at least 32 — generate one with ` +
        '`openssl rand -hex 32` and pass it as ${BACKOUT_SEAL_KEY} (a secret), or remove the key to use state.dir/seal.key',
      'bad_config'
    )
  return key
}

function resolvePaths(cfg: Config, base: string): Config {
  const r = (p: string): string => path.resolve(base, p)
  const ro = (p: string | undefined): string | undefined => (p === undefined ? undefined : r(p))
  const targets = { ...cfg.targets }
  for (const color of ['blue', 'green'] as const) {
    const t = cfg.targets[color]
    targets[color] = {
      ...t,
      process: t.process && {
        ...t.process,
        pidFile: r(t.process.pidFile),
        cwd: r(t.process.cwd ?? '.'),
        logFile: ro(t.process.logFile)
      },
      compose: t.compose && { ...t.compose, file: r(t.compose.file) },
      systemd: t.systemd && { ...t.systemd, gitDir: ro(t.systemd.gitDir) }
    }
  }
  const stateDir = r(cfg.state.dir.replace('<service>', cfg.service))
  const db = cfg.database
  let database = db
  if (db?.kind === 'sqlite') database = { ...db, path: r(db.path) }
  if (db?.kind === 'postgres')
    database = {
      ...db,
      dataDir: ro(db.dataDir),
      binDir: ro(db.binDir),
      walArchiveDir: ro(db.walArchiveDir)
    }
  if (database?.migrations) {
    const m = database.migrations
    database = {
      ...database,
      migrations: m.kind === 'sql' ? { ...m, dir: r(m.dir) } : { ...m, ini: r(m.ini) }
    }
  }
  return {
    ...cfg,
    targets,
    database,
    nginx: { ...cfg.nginx, upstreamFile: r(cfg.nginx.upstreamFile) },
    configFiles: cfg.configFiles.map(r),
    data: cfg.data.map(d => ({ ...d, path: r(d.path) })),
    corruptionMarker: ro(cfg.corruptionMarker),
    backups: { ...cfg.backups, dir: r(cfg.backups.dir), sealKey: sealKey(cfg.backups.sealKey) },
    state: { dir: stateDir },
    history: { log: r(cfg.history.log.replace('<state.dir>', stateDir)) }
  }
}
