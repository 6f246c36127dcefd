import { createHash } from 'node:crypto'
import {
  cpSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  truncateSync,
  writeFileSync
} from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { pgQuery } from '../../src/drivers/database'
import { isAlive, readPid } from '../../src/drivers/process'
import { runCli, startSandbox, type TestSandbox } from '../support/cli'

/**
 * Every kind of broken backup — a flipped byte, a truncated file, a missing file, a manifest that lies (a corrupted
 * file whose size and sha256 were written into manifest.json to "match"), a dump of another database — named as the
 * target of Level 3 and of Level 2, must be refused in pre-flight: exit 2, a message naming the problem, and nothing
 * stopped (both targets running, the nginx upstream file unchanged, the schema and the rows unchanged).
 *
 * Each case corrupts a copy of the release snapshot under a new backup id, so the cases are independent. Cases that
 * backout does not refuse today are `test.failing` with the diagnosis beside them (and run in their own sandbox,
 * since the rollback then really happens).
 */
let refused = 0
const kinds = new Set<string>()
afterAll(() => {
  process.stdout.write(`corruptions refused: ${refused} (${kinds.size} kinds of broken backup)\n`)
})

type Corruption = 'intact' | 'flip' | 'truncate' | 'missing' | 'lie' | 'lie-truncate'

function dbUrl(sb: TestSandbox): string {
  const m = /^\s*url:\s*(postgresql:\/\/\S+)\s*$/m.exec(readFileSync(sb.config, 'utf8'))
  if (!m?.[1]) throw new Error(`no database.url in ${sb.config}`)
  return m[1]
}

/** The release snapshot: the oldest snapshot, not counting the broken copies (20000101-*) these tests make. */
function releaseSnapshot(sb: TestSandbox): string {
  const id = readdirSync(path.join(sb.dir, 'backups'))
    .filter(n => /^\d{8}-\d{6}$/.test(n) && !n.startsWith('20000101-'))
    .sort()[0]
  if (!id) throw new Error('the sandbox has no release snapshot')
  return id
}

function flipByte(file: string): void {
  const bytes = readFileSync(file)
  const pos = Math.floor(bytes.length / 2)
  bytes[pos] = (bytes[pos] ?? 0) ^ 0xff
  writeFileSync(file, bytes)
}

interface ManifestJson {
  id: string
  files: { path: string; size: number; sha256: string }[]
}

/** Rewrites manifest.json so that `rel` "matches" what is on disk now: the lie. */
function lieAbout(dir: string, rel: string): void {
  const file = path.join(dir, 'manifest.json')
  const m = JSON.parse(readFileSync(file, 'utf8')) as ManifestJson
  const bytes = readFileSync(path.join(dir, rel))
  const entry = m.files.find(f => f.path === rel)
  if (!entry) throw new Error(`${rel} is not in the manifest`)
  entry.size = bytes.length
  entry.sha256 = createHash('sha256').update(bytes).digest('hex')
  writeFileSync(file, JSON.stringify(m, null, 2) + '\n')
}

let nextId = 0
/** A copy of the release snapshot under a fresh backup id, with `rel` broken the given way. */
function brokenCopy(sb: TestSandbox, corruption: Corruption, rel: string): string {
  const id = `20000101-${String(++nextId).padStart(6, '0')}`
  const src = path.join(sb.dir, 'backups', releaseSnapshot(sb))
  const dir = path.join(sb.dir, 'backups', id)
  cpSync(src, dir, { recursive: true })
  const manifestFile = path.join(dir, 'manifest.json')
  const m = JSON.parse(readFileSync(manifestFile, 'utf8')) as ManifestJson
  m.id = id
  writeFileSync(manifestFile, JSON.stringify(m, null, 2) + '\n')
  const file = path.join(dir, rel)
  if (!existsSync(file)) throw new Error(`${rel} is not in the backup`)
  if (corruption === 'flip' || corruption === 'lie') flipByte(file)
  if (corruption === 'truncate' || corruption === 'lie-truncate')
    truncateSync(file, Math.floor(readFileSync(file).length / 2))
  if (corruption === 'missing') rmSync(file)
  if (corruption === 'lie' || corruption === 'lie-truncate') lieAbout(dir, rel)
  return id
}

interface ServiceState {
  pids: (number | undefined)[]
  upstream: string
  schema: string
  rows: string
}

async function serviceState(sb: TestSandbox): Promise<ServiceState> {
  const [r] = await pgQuery<{ v: string; rows: string }>(
    dbUrl(sb),
    `SELECT (SELECT max(version)::text FROM schema_migrations) AS v,
            (SELECT count(*) FROM users) || '/' || (SELECT count(*) FROM sessions) || '/' || (SELECT count(*) FROM game_state) || ' ' ||
            (SELECT md5(string_agg(x::text, '|' ORDER BY x.id)) FROM users x) AS rows`
  )
  return {
    pids: ['blue', 'green'].map(c => readPid(path.join(sb.dir, `run/${c}.pid`))),
    upstream: readFileSync(path.join(sb.dir, 'nginx/upstream.conf'), 'utf8'),
    schema: r?.v ?? 'none',
    rows: r?.rows ?? 'none'
  }
}

/** Level `level` with the broken backup as --target: exit 2, the message matches, nothing was touched. */
async function expectRefused(
  sb: TestSandbox,
  level: 2 | 3,
  id: string,
  messages: RegExp[],
  kind: string
): Promise<void> {
  const before = await serviceState(sb)
  expect(before.pids.every(p => p !== undefined && isAlive(p))).toBe(true)
  const res = await runCli([
    '--config',
    sb.config,
    'rollback',
    '--level',
    String(level),
    '--auto-confirm',
    '--target',
    id
  ])
  expect({ level, code: res.code, out: res.stdout + res.stderr }).toMatchObject({ level, code: 2 })
  for (const m of messages) expect(res.stdout + res.stderr).toMatch(m)
  const after = await serviceState(sb)
  expect(after).toEqual(before)
  expect(after.pids.every(p => p !== undefined && isAlive(p))).toBe(true)
  refused++
  kinds.add(kind)
}

const env = (sb: TestSandbox, rel: string): string => path.join('config', sb.dir.replace(/^\/+/, ''), rel)

describe('in one sandbox: broken backups refused by Level 3 and Level 2 before anything stops', () => {
  let sb: TestSandbox
  beforeAll(async () => {
    sb = await startSandbox()
    expect((await serviceState(sb)).schema).toBe('105')
  })
  afterAll(async () => {
    await sb?.down()
  })

  const DAMAGED = /backup 20000101-\d{6} is damaged/
  const checksumCases: [Corruption, string, RegExp][] = [
    ['flip', 'database/dump.tar.zst', /database\/dump\.tar\.zst: sha256 mismatch/],
    ['flip', 'database/base.tar.zst', /database\/base\.tar\.zst: sha256 mismatch/],
    ['flip', 'data/godot-data.tar.zst', /data\/godot-data\.tar\.zst: sha256 mismatch/],
    ['flip', 'CONFIG/.env', /\.env: sha256 mismatch/],
    ['truncate', 'database/dump.tar.zst', /database\/dump\.tar\.zst: size \d+, manifest says \d+/],
    ['truncate', 'data/godot-data.tar.zst', /data\/godot-data\.tar\.zst: size \d+, manifest says \d+/],
    ['missing', 'database/base.tar.zst', /database\/base\.tar\.zst: missing/],
    ['missing', 'CONFIG/app.json', /app\.json: missing/]
  ]
  test.each(checksumCases)(
    '%s %s: refused by checksum (Level 3, Level 2)',
    async (corruption, file, problem) => {
      const rel = file.replace(/^CONFIG\//, env(sb, 'config/'))
      const id = brokenCopy(sb, corruption, rel)
      await expectRefused(sb, 3, id, [DAMAGED, problem], `${corruption} ${file}`)
      await expectRefused(sb, 2, id, [DAMAGED, problem], `${corruption} ${file}`)
    }
  )

  test('a truncated manifest.json: the backup is not offered at all (Level 3, Level 2)', async () => {
    const id = brokenCopy(sb, 'truncate', 'manifest.json')
    const notFound = new RegExp(`backup not found: ${id} \\(looked for .*/manifest\\.json\\)`)
    await expectRefused(sb, 3, id, [notFound], 'truncated manifest')
    await expectRefused(sb, 2, id, [notFound], 'truncated manifest')
  })

  // The manifest lies: checksums pass, the content checks of Level 3's pre-flight catch it (zstd's frame checksum
  // while reading the dump's TOC, extracting the base backup, the data archive drill).
  const lyingCases: [Corruption, string, RegExp][] = [
    [
      'lie',
      'database/dump.tar.zst',
      /database dump .*dump\.tar\.zst is corrupt: .*Restored data doesn't match checksum/
    ],
    ['lie-truncate', 'database/dump.tar.zst', /database dump .*dump\.tar\.zst is corrupt: .*premature end/],
    [
      'lie',
      'database/base.tar.zst',
      /base backup of 20000101-\d{6} is corrupt: .*(Data corruption detected|checksum)/
    ],
    [
      'lie',
      'data/godot-data.tar.zst',
      /godot-data\.tar\.zst does not extract: .*(Data corruption detected|checksum)/
    ]
  ]
  test.each(lyingCases)(
    '%s %s (manifest rewritten to match): refused by Level 3',
    async (corruption, rel, problem) => {
      const id = brokenCopy(sb, corruption, rel)
      expect((await runCli(['--config', sb.config, 'verify', '--quick', id])).code).toBe(0) // the lie holds for checksums
      await expectRefused(sb, 3, id, [problem], `${corruption} ${rel}`)
    }
  )
})

describe('known gaps: broken backups that are not refused today (each in its own sandbox)', () => {
  let sb: TestSandbox | undefined
  afterEach(async () => {
    await sb?.down()
    sb = undefined
  })

  // Level 2 pre-flight checks the Method 2 fallback (the target's dump) even when Method 1 (down scripts) is
  // planned: a dump corrupted under a lying manifest refuses before green is stopped.
  test('Level 2: a corrupt dump under a lying manifest (its Method 2 fallback) is refused', async () => {
    sb = await startSandbox()
    const id = brokenCopy(sb, 'lie', 'database/dump.tar.zst')
    await expectRefused(sb, 2, id, [/dump\.tar\.zst is corrupt/], 'lie database/dump.tar.zst')
  })

  // manifest.json covers every file but nothing covers manifest.json: no digest of it is kept outside the backup
  // (state/, the history log). A plain config file edited together with its manifest entry passes store.verify,
  // and Level 3 (level3.ts, Configuration restoration) writes the edited file into the service.
  test.failing('Level 3: a config file edited under a lying manifest is refused', async () => {
    sb = await startSandbox()
    const rel = env(sb, 'config/.env')
    const id = brokenCopy(sb, 'lie', rel)
    await expectRefused(sb, 3, id, [/\.env/], 'lie config')
  })

  describe('a dump (and base backup) of another database, manifest rewritten to match', () => {
    let donor: string
    beforeAll(async () => {
      // Another service's database, with other rows, captured by backout snapshot.
      const other = await startSandbox()
      try {
        await pgQuery(
          dbUrl(other),
          "INSERT INTO users (name, email) SELECT 'other ' || g, 'other' || g || '@t.test' FROM generate_series(1, 10) g"
        )
        expect((await runCli(['--config', other.config, 'snapshot'])).code).toBe(0)
        const id = readdirSync(path.join(other.dir, 'backups'))
          .filter(n => /^\d{8}-\d{6}$/.test(n))
          .sort()
          .at(-1)!
        donor = mkdtempSync(path.join(tmpdir(), 'backout-donor-'))
        cpSync(path.join(other.dir, 'backups', id, 'database'), donor, { recursive: true })
      } finally {
        await other.down()
      }
    })
    afterAll(() => rmSync(donor, { recursive: true, force: true }))

    function foreignCopy(s: TestSandbox, files: string[]): string {
      const id = brokenCopy(s, 'intact', 'manifest.json')
      const dir = path.join(s.dir, 'backups', id)
      for (const f of files) {
        cpSync(path.join(donor, path.basename(f)), path.join(dir, f))
        lieAbout(dir, f)
      }
      return id
    }

    // Level 3 pre-flight (level3.ts → checkDatabaseBackup in database-backup.ts) proves the dump readable
    // (pg_restore --list) and the base backup self-consistent (pg_verifybackup), but nothing ties them to this
    // service's database: the manifest records no system identifier or database identity, and the row counts and
    // schema version it recorded are compared only after the restore (Data integrity verification), when both
    // targets are already stopped. Found: Level 3 restores the other cluster's base backup, starts blue on it and
    // fails afterwards with "schema version 105, the backup recorded 104" — exit 1, service on foreign data.
    test.failing('Level 3: dump and base backup of another database are refused', async () => {
      sb = await startSandbox()
      const id = foreignCopy(sb, ['database/dump.tar.zst', 'database/base.tar.zst'])
      await expectRefused(
        sb,
        3,
        id,
        [/another database|does not match|system identifier/],
        'another database'
      )
    })

    // Same gap with only the dump swapped: Level 3 restores from the (own) base backup and succeeds, so the foreign
    // dump goes unnoticed; Level 2 never reads it unless its down scripts fail and it falls back to it.
    test.failing(
      'Level 2: a dump of another database as the target (its Method 2 fallback) is refused',
      async () => {
        sb = await startSandbox()
        const id = foreignCopy(sb, ['database/dump.tar.zst'])
        await expectRefused(sb, 2, id, [/another database|does not match/], 'another database')
      }
    )
  })
})
