import { realpathSync } from 'node:fs'
import { chmod, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { OperationError, UserError } from '../core/errors'
import { type CommandResult, runCommand } from './exec'

/**
 * Which database alembic really uses. A project's env.py decides, not backout: a stock `alembic init` env.py reads
 * `sqlalchemy.url` from alembic.ini and ignores DATABASE_URL, others read an environment variable or hard-code a
 * URL. So instead of assuming, backout runs the project's env.py the way alembic does, with the engine factory
 * replaced by one that records the URL and stops before anything connects; and, to point alembic at a database of
 * its choosing (a scratch database), writes a copy of alembic.ini whose sqlalchemy.url is that database.
 */

/** The database a URL names, without its password. */
export interface AlembicDatabase {
  /** SQLAlchemy's backend name: sqlite, postgresql, mysql… */
  backend: string
  host?: string | null
  port?: number | null
  database?: string | null
  username?: string | null
  /** SQLite: the file's absolute path (relative paths resolved from the project directory, as alembic does). */
  path?: string | null
}

/** Runs env.py with create_engine replaced: prints the URL it would connect to, then stops. */
const DATABASE_PY = `
import json, os, sys
import sqlalchemy
import sqlalchemy.engine
from sqlalchemy.engine import create as _create
from sqlalchemy.engine.url import make_url
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.runtime.environment import EnvironmentContext

class Captured(Exception):
    pass

seen = []
def describe(u):
    u = make_url(u)
    d = {"backend": u.get_backend_name(), "host": u.host, "port": u.port, "database": u.database,
         "username": u.username, "path": None}
    if d["backend"] == "sqlite" and u.database and u.database != ":memory:" and not u.database.startswith("file:"):
        d["path"] = os.path.realpath(u.database)
    return d

def capture(url, *args, **kwargs):
    seen.append(describe(url))
    raise Captured()

_create.create_engine = capture
sqlalchemy.create_engine = capture
sqlalchemy.engine.create_engine = capture
try:
    import sqlalchemy.ext.asyncio as _aio
    import sqlalchemy.ext.asyncio.engine as _aio_engine
    _aio.create_async_engine = capture
    _aio_engine.create_async_engine = capture
except Exception:
    pass

cfg = Config(sys.argv[1], ini_section=sys.argv[2])
script = ScriptDirectory.from_config(cfg)
def fn(rev, context):
    bind = context.bind
    if bind is not None and not seen:
        seen.append(describe(bind.engine.url))
    return []
try:
    with EnvironmentContext(cfg, script, fn=fn, dont_mutate=True):
        script.run_env()
except Captured:
    pass
print("BACKOUT_ALEMBIC_DATABASE=" + json.dumps(seen[0] if seen else None))
`

/** Writes a copy of an alembic.ini with another sqlalchemy.url: %(here)s keeps meaning the original's folder. */
const FORCED_INI_PY = `
import configparser, os, sys
src, dst, section, project = sys.argv[1:5]
url = sys.stdin.read()
cp = configparser.RawConfigParser(strict=False)
cp.optionxform = str
with open(src, encoding="utf-8") as f:
    cp.read_file(f)
if not cp.has_section(section):
    sys.exit("%s has no [%s] section" % (src, section))
cp.set("DEFAULT", "here", os.path.dirname(os.path.abspath(src)).replace("%", "%%"))
loc = cp.get(section, "script_location", fallback=None)
if loc and "%(" not in loc and ":" not in loc and not os.path.isabs(loc):
    cp.set(section, "script_location", os.path.join(project, loc).replace("%", "%%"))
cp.set(section, "sqlalchemy.url", url.replace("%", "%%"))
fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
with os.fdopen(fd, "w", encoding="utf-8") as f:
    cp.write(f)
`

function tail(res: CommandResult): string {
  const lines = (res.stderr + '\n' + res.stdout)
    .split('\n')
    .map(l => l.trim())
    .filter(l => l && !/^(File "|Traceback|\^+$|~+)/.test(l))
  return lines.slice(-3).join(' | ') || '(no output)'
}

export interface AlembicRunContext {
  /** The directory alembic runs in (holding alembic.ini). */
  projectDir: string
  /** alembic.ini, absolute or relative to projectDir. */
  ini: string
  /** The Python that has alembic installed. */
  python: string
  /** The [section] of the ini alembic reads; default alembic. */
  section?: string
  env: NodeJS.ProcessEnv
  signal?: AbortSignal
}

/**
 * The database the project's env.py would connect to, run as alembic runs it (same ini, directory and environment);
 * nothing connects. Undefined when env.py never creates an engine.
 */
export async function alembicDatabase(ctx: AlembicRunContext): Promise<AlembicDatabase | undefined> {
  const res = await runCommand([ctx.python, '-c', DATABASE_PY, ctx.ini, ctx.section ?? 'alembic'], {
    cwd: ctx.projectDir,
    env: ctx.env,
    signal: ctx.signal,
    timeoutMs: 60_000
  })
  const line = res.stdout.split('\n').find(l => l.startsWith('BACKOUT_ALEMBIC_DATABASE='))
  if (res.code !== 0 || !line)
    throw new OperationError(
      `could not find out which database ${path.resolve(ctx.projectDir, ctx.ini)}'s env.py uses (exit ${res.code}): ${tail(res)}`
    )
  const parsed = JSON.parse(line.slice('BACKOUT_ALEMBIC_DATABASE='.length)) as AlembicDatabase | null
  return parsed ?? undefined
}

/** A database URL (postgresql://…, sqlite:///…) as an AlembicDatabase, for comparison; relative SQLite paths from cwd. */
export function databaseOfUrl(url: string, cwd: string): AlembicDatabase {
  // sqlite:///relative.db, sqlite:////absolute.db, sqlite:// (in memory)
  const sqlite = /^sqlite(?:\+\w+)?:\/\/(.*)$/.exec(url)
  if (sqlite) {
    const file = (sqlite[1] ?? '').replace(/^\//, '').replace(/\?.*$/, '')
    return { backend: 'sqlite', path: file ? realOrResolved(path.resolve(cwd, file)) : null }
  }
  const u = new URL(url)
  const backend = u.protocol.replace(/:$/, '').split('+')[0] ?? ''
  return {
    backend: backend === 'postgres' ? 'postgresql' : backend,
    host: u.hostname ? decodeURIComponent(u.hostname) : null,
    port: u.port ? Number(u.port) : null,
    database: decodeURIComponent(u.pathname.replace(/^\//, '')) || null,
    username: u.username ? decodeURIComponent(u.username) : null
  }
}

function realOrResolved(p: string): string {
  try {
    return realpathSync(p)
  } catch {
    return p
  }
}

const LOCAL = new Set(['localhost', '127.0.0.1', '::1', '[::1]'])
const DEFAULT_PORTS: Record<string, number> = { postgresql: 5432, mysql: 3306 }

/** Whether two descriptions name the same database (SQLite: the same file; servers: host, port and name). */
export function sameDatabase(a: AlembicDatabase, b: AlembicDatabase): boolean {
  if (a.backend !== b.backend) return false
  if (a.backend === 'sqlite') return !!a.path && !!b.path && realOrResolved(a.path) === realOrResolved(b.path)
  const host = (h: string | null | undefined): string => {
    const x = (h ?? 'localhost').toLowerCase()
    return LOCAL.has(x) ? 'localhost' : x
  }
  const port = (d: AlembicDatabase): number | null => d.port ?? DEFAULT_PORTS[d.backend] ?? null
  const name = (d: AlembicDatabase): string => d.database ?? d.username ?? ''
  return host(a.host) === host(b.host) && port(a) === port(b) && name(a) === name(b)
}

/** One line naming a database, never its password. */
export function describeDatabase(d: AlembicDatabase): string {
  if (d.backend === 'sqlite') return `SQLite ${d.path ?? '(in memory)'}`
  return `${d.backend}://${d.username ? `${d.username}@` : ''}${d.host ?? 'localhost'}${d.port ? `:${d.port}` : ''}/${d.database ?? ''}`
}

/**
 * A copy of the project's alembic.ini whose sqlalchemy.url is `url`, in a private temp directory (mode 0700; the
 * URL may hold a password): %(here)s still means the project's folder and a relative script_location is made
 * absolute. Pass it with `alembic -c`; remove() deletes it.
 */
export async function forcedIni(
  ctx: Omit<AlembicRunContext, 'env'>,
  url: string
): Promise<{ file: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), 'backout-alembic-'))
  await chmod(dir, 0o700)
  const file = path.join(dir, 'alembic.ini')
  const res = await runCommand(
    [
      ctx.python,
      '-c',
      FORCED_INI_PY,
      path.resolve(ctx.projectDir, ctx.ini),
      file,
      ctx.section ?? 'alembic',
      path.resolve(ctx.projectDir)
    ],
    // The URL on standard input: it may hold a password, which must not reach argv.
    { signal: ctx.signal, timeoutMs: 30_000, input: url }
  )
  const remove = (): Promise<void> => rm(dir, { recursive: true, force: true })
  if (res.code !== 0) {
    await remove()
    throw new OperationError(
      `could not write a copy of ${path.resolve(ctx.projectDir, ctx.ini)} for the scratch database: ${tail(res)}`
    )
  }
  return { file, remove }
}

/**
 * Refuses (UserError, bad_config) unless the database alembic would use — as the project's env.py decides, asked
 * without connecting — is the configured one: a rollback must not back up one database and downgrade another.
 * `configured.url` is database.url, or sqlite:///<absolute database.path>. Returns a one-line detail.
 */
export async function requireConfiguredDatabase(
  alembic: { database(): Promise<AlembicDatabase | undefined> },
  configured: { url: string; ini: string; key: string }
): Promise<string> {
  const want = databaseOfUrl(configured.url, process.cwd())
  const uses = await alembic.database()
  if (uses && sameDatabase(uses, want))
    return `alembic uses ${describeDatabase(uses)}, the configured database`
  throw new UserError(
    `alembic would migrate ${uses ? describeDatabase(uses) : 'no database (env.py creates no SQLAlchemy engine)'} — what ` +
      `the env.py of ${configured.ini} connects to — but backout.yml's database (${configured.key}) is ` +
      `${describeDatabase(want)}: the rollback would back up one database and downgrade another. Nothing was changed. ` +
      `Point both at the same database: set sqlalchemy.url in ${configured.ini} to it (the env.py \`alembic init\` ` +
      `writes reads that), or make env.py read $DATABASE_URL (backout sets it to ${configured.key}), or correct ` +
      `${configured.key} in backout.yml`,
    'bad_config'
  )
}
