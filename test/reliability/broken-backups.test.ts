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
import { sealManifest, type Manifest } from '../../src/core/manifest'
import { pgQuery } from '../../src/drivers/database'
import { isAlive, readPid } from '../../src/drivers/process'
import { runCli, startSandbox, type TestSandbox } from '../support/cli'

/**
 * Every kind of broken backup — a flipped byte, a truncated file, a missing file, a truncated manifest, a manifest
 * that lies (a corrupted file whose size and sha256 were written into manifest.json to "match"), a dump or base
 * backup of another database — named as the target of Level 3 and of Level 2, must be refused in pre-flight: exit 2,
 * a message naming the problem, and nothing stopped (both targets running, the nginx upstream file unchanged, the
 * schema and the rows unchanged).
 *
 * A lying manifest comes two ways. Rewritten afterwards by someone without the seal key (state/seal.key, outside the
 * backup): the seal catches it. Written and sealed over files already broken (a copy made with the key, a bug in
 * the capture): the seal holds, and the content checks of the pre-flight must catch it — these cases reseal the
 * manifest with the sandbox's key, the strongest liar there is.
 *
 * Each case corrupts a copy of the release snapshot under a new backup id (resealed: a good backup in its own right),
 * so the cases are independent.
 */
let refused = 0
const kinds = new Set<string>()
afterAll(() => {
  process.stdout.write(`corruptions refused: ${refused} (${kinds.size} kinds of broken backup)\n`)
})

/** lie*: the manifest rewritten to match, and resealed with the key; unsealed-lie: rewritten without the key. */
type Corruption = 'intact' | 'flip' | 'truncate' | 'missing' | 'lie' | 'lie-truncate' | 'unsealed-lie'

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

/** Rewrites a backup's manifest.json; with a key, seals it again (as backout would). */
function rewriteManifest(dir: string, edit: (m: ManifestJson) => void, key?: string): void {
  const file = path.join(dir, 'manifest.json')
  const m = JSON.parse(readFileSync(file, 'utf8')) as ManifestJson
  edit(m)
  const out = key ? { ...m, seal: sealManifest(m as unknown as Manifest, key) } : m
  writeFileSync(file, JSON.stringify(out, null, 2) + '\n')
}

/** The sandbox's seal key (state/seal.key), written by its first snapshot. */
function sealKey(sb: TestSandbox): string {
  return readFileSync(path.join(sb.dir, 'state/seal.key'), 'utf8').trim()
}

/** Rewrites manifest.json so that `rel` "matches" what is on disk now: the lie, resealed when given the key. */
function lieAbout(dir: string, rel: string, key?: string): void {
  rewriteManifest(
    dir,
    m => {
      const bytes = readFileSync(path.join(dir, rel))
      const entry = m.files.find(f => f.path === rel)
      if (!entry) throw new Error(`${rel} is not in the manifest`)
      entry.size = bytes.length
      entry.sha256 = createHash('sha256').update(bytes).digest('hex')
    },
    key
  )
}

let nextId = 0
/** A copy of the release snapshot under a fresh backup id, with `rel` broken the given way. */
function brokenCopy(sb: TestSandbox, corruption: Corruption, rel: string): string {
  const id = `20000101-${String(++nextId).padStart(6, '0')}`
  const src = path.join(sb.dir, 'backups', releaseSnapshot(sb))
  const dir = path.join(sb.dir, 'backups', id)
  cpSync(src, dir, { recursive: true })
  rewriteManifest(dir, m => (m.id = id), sealKey(sb))
  const file = path.join(dir, rel)
  if (!existsSync(file)) throw new Error(`${rel} is not in the backup`)
  if (corruption === 'flip' || corruption === 'lie' || corruption === 'unsealed-lie') flipByte(file)
  if (corruption === 'truncate' || corruption === 'lie-truncate')
    truncateSync(file, Math.floor(readFileSync(file).length / 2))
  if (corruption === 'missing') rmSync(file)
  if (corruption === 'lie' || corruption === 'lie-truncate') lieAbout(dir, rel, sealKey(sb))
  if (corruption === 'unsealed-lie') lieAbout(dir, rel)
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

  test('a truncated manifest.json: named as damaged, not as missing (Level 3, Level 2)', async () => {
    const id = brokenCopy(sb, 'truncate', 'manifest.json')
    const damaged = new RegExp(`backup ${id} is damaged: .*/manifest\\.json is not valid JSON`)
    await expectRefused(sb, 3, id, [damaged], 'truncated manifest')
    await expectRefused(sb, 2, id, [damaged], 'truncated manifest')
    expect((await runCli(['--config', sb.config, 'verify', '--quick', id])).code).toBe(2)
  })

  // Rewritten without the key: checksums "match", the seal does not.
  const unsealedCases: [string][] = [['database/dump.tar.zst'], ['CONFIG/.env'], ['data/godot-data.tar.zst']]
  test.each(unsealedCases)(
    'manifest rewritten to match a changed %s, without the seal key: refused by the seal (Level 3, Level 2)',
    async file => {
      const rel = file.replace(/^CONFIG\//, env(sb, 'config/'))
      const id = brokenCopy(sb, 'unsealed-lie', rel)
      const problem =
        /manifest\.json: seal does not match — the manifest was changed after the backup was taken/
      const verify = await runCli(['--config', sb.config, 'verify', '--quick', id])
      expect({ code: verify.code, out: verify.stdout }).toMatchObject({ code: 1 })
      expect(verify.stdout).toMatch(problem)
      await expectRefused(sb, 3, id, [DAMAGED, problem], `unsealed lie ${file}`)
      await expectRefused(sb, 2, id, [DAMAGED, problem], `unsealed lie ${file}`)
    }
  )

  test('a manifest without a seal, or sealed with another key: refused, and `backout seal` accepts it', async () => {
    const unsealed = brokenCopy(sb, 'intact', 'manifest.json')
    rewriteManifest(path.join(sb.dir, 'backups', unsealed), m => delete (m as { seal?: unknown }).seal)
    await expectRefused(sb, 3, unsealed, [DAMAGED, /manifest\.json: not sealed/], 'unsealed manifest')
    const foreignKey = brokenCopy(sb, 'intact', 'manifest.json')
    rewriteManifest(path.join(sb.dir, 'backups', foreignKey), () => undefined, 'another host key '.repeat(4))
    await expectRefused(
      sb,
      2,
      foreignKey,
      [DAMAGED, /sealed with key [0-9a-f]{16}, this host's key is [0-9a-f]{16} — set backups\.sealKey/],
      'manifest sealed with another key'
    )
    // The operator accepts it: every file is checked first, then it is sealed with this host's key.
    const sealed = await runCli(['--config', sb.config, 'seal', foreignKey])
    expect({ code: sealed.code, err: sealed.stderr }).toMatchObject({ code: 0 })
    expect((await runCli(['--config', sb.config, 'verify', '--quick', foreignKey])).code).toBe(0)
    // A backup whose files do not match is never sealed.
    const broken = brokenCopy(sb, 'unsealed-lie', 'database/dump.tar.zst')
    flipByte(path.join(sb.dir, 'backups', broken, 'database/dump.tar.zst'))
    const refusedSeal = await runCli(['--config', sb.config, 'seal', broken])
    expect(refusedSeal.code).toBe(2)
    expect(refusedSeal.stderr).toMatch(/is damaged, not sealed: database\/dump\.tar\.zst: sha256 mismatch/)
  })

  // The manifest lies and is sealed over the broken files: checksums and seal pass, the content checks of Level 3's
  // pre-flight catch it (zstd's frame checksum while reading the dump's TOC, extracting the base backup, the data
  // archive drill).
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

  // Level 2 pre-flight checks the Method 2 fallback (the target's dump) even when Method 1 (down scripts) is
  // planned: a dump corrupted under a lying (sealed) manifest refuses before green is stopped.
  test('Level 2: a corrupt dump under a lying manifest (its Method 2 fallback) is refused', async () => {
    const id = brokenCopy(sb, 'lie', 'database/dump.tar.zst')
    await expectRefused(sb, 2, id, [/dump\.tar\.zst is corrupt/], 'lie database/dump.tar.zst')
  })

  // The manifest records what ties the capture to this database: the sha256 of the dump's table of contents, the
  // base backup's system identifier. A dump or base backup of another service's database, put in place under a
  // manifest resealed to match, reads and verifies fine on its own; the pre-flight compares it with what was captured.
  describe('a dump (and base backup) of another database, manifest rewritten and resealed to match', () => {
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

    function foreignCopy(files: string[]): string {
      const id = brokenCopy(sb, 'intact', 'manifest.json')
      const dir = path.join(sb.dir, 'backups', id)
      for (const f of files) {
        cpSync(path.join(donor, path.basename(f)), path.join(dir, f))
        lieAbout(dir, f, sealKey(sb))
      }
      return id
    }

    test('the dump and the base backup of another database: refused by Level 3 and Level 2', async () => {
      const id = foreignCopy(['database/dump.tar.zst', 'database/base.tar.zst'])
      const dump =
        /the database dump in backup 20000101-\d{6} is not the one it captured: its table of contents differs/
      await expectRefused(sb, 3, id, [dump], 'dump of another database')
      await expectRefused(sb, 2, id, [dump], 'dump of another database')
    })

    test('only the base backup of another database: refused by Level 3 (system identifier)', async () => {
      const id = foreignCopy(['database/base.tar.zst'])
      await expectRefused(
        sb,
        3,
        id,
        [
          /the base backup in backup 20000101-\d{6} is a copy of another database cluster: system identifier \d+, the backup captured \d+/
        ],
        'base backup of another cluster'
      )
    })

    test('only the dump of another database: refused by Level 2 (its Method 2 fallback)', async () => {
      const id = foreignCopy(['database/dump.tar.zst'])
      await expectRefused(sb, 2, id, [/is not the one it captured/], 'dump of another database')
    })
  })
})
