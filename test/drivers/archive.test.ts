import { skipWithout } from '../support/real-system'
import { randomBytes } from 'node:crypto'
import { spawnSync } from 'node:child_process'
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  openSync,
  writeSync,
  closeSync
} from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import {
  DiskFullError,
  sha256File,
  tarZstd,
  untarZstd,
  unzstdFile,
  zstdFile
} from '../../src/drivers/archive'

let root: string
beforeEach(() => {
  root = mkdtempSync(path.join(tmpdir(), 'backout-archive-'))
})
afterEach(() => {
  rmSync(root, { recursive: true, force: true })
})

function makeTree(dir: string): void {
  mkdirSync(path.join(dir, 'sub', 'deeper'), { recursive: true })
  writeFileSync(path.join(dir, 'a.txt'), 'hello\n')
  writeFileSync(path.join(dir, 'sub', 'b.bin'), randomBytes(300_000))
  writeFileSync(path.join(dir, 'sub', 'deeper', 'c.txt'), 'x'.repeat(100_000))
}

function flipByte(file: string, at: number): void {
  const fd = openSync(file, 'r+')
  const buf = Buffer.alloc(1)
  const { size } = statSync(file)
  const pos = Math.min(at, size - 1)
  const read = readFileSync(file)[pos] ?? 0
  buf[0] = read ^ 0xff
  writeSync(fd, buf, 0, 1, pos)
  closeSync(fd)
}

test('tar | zstd round trip: the checksum computed while streaming equals a re-read, contents equal', async () => {
  const src = path.join(root, 'src')
  makeTree(src)
  const out = path.join(root, 'store', 'data.tar.zst')
  const written = await tarZstd(src, out)
  expect(written.size).toBe(statSync(out).size)
  expect(written.sha256).toBe(await sha256File(out))
  expect(readdirSync(path.dirname(out))).toEqual(['data.tar.zst']) // no temp file left behind

  const dest = path.join(root, 'restored')
  const extracted = await untarZstd(out, dest)
  expect(extracted.sha256).toBe(written.sha256)
  for (const rel of ['a.txt', 'sub/b.bin', 'sub/deeper/c.txt'])
    expect(readFileSync(path.join(dest, rel)).equals(readFileSync(path.join(src, rel)))).toBe(true)
})

test('one flipped byte is caught by the checksum, and zstd refuses to extract it', async () => {
  const src = path.join(root, 'src')
  makeTree(src)
  const out = path.join(root, 'data.tar.zst')
  const written = await tarZstd(src, out)
  flipByte(out, Math.floor(written.size / 2))
  expect(await sha256File(out)).not.toBe(written.sha256)
  await expect(untarZstd(out, path.join(root, 'x'))).rejects.toThrow(/cannot extract .*data\.tar\.zst/)
})

test('zstdFile / unzstdFile round trip with checksums', async () => {
  const input = path.join(root, 'dump.sql')
  writeFileSync(input, 'INSERT INTO t VALUES (1);\n'.repeat(10_000))
  const z = await zstdFile(input, path.join(root, 'dump.sql.zst'))
  expect(z.sha256).toBe(await sha256File(z.file))
  expect(z.size).toBeLessThan(statSync(input).size)
  const back = await unzstdFile(z.file, path.join(root, 'back.sql'))
  expect(back.sha256).toBe(await sha256File(input))
})

test('errors name the file and why', async () => {
  await expect(tarZstd(path.join(root, 'nope'), path.join(root, 'o.tar.zst'))).rejects.toThrow(
    /nope: not a directory/
  )
  await expect(untarZstd(path.join(root, 'missing.tar.zst'), root)).rejects.toThrow(
    /missing\.tar\.zst: no such file/
  )
  const junk = path.join(root, 'junk.zst')
  writeFileSync(junk, 'this is not zstd')
  await expect(unzstdFile(junk, path.join(root, 'out'))).rejects.toThrow(/decompressing .*junk\.zst/)
  expect(readdirSync(root).filter(f => f.includes('partial'))).toEqual([])
  await expect(sha256File(path.join(root, 'gone'))).rejects.toThrow(/cannot read .*gone/)
})

test('a full disk gives a clear error naming the dir and leaves no partial file', async () => {
  const small = path.join(root, 'small')
  mkdirSync(small)
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', small], { encoding: 'utf8' })
  if (
    skipWithout(
      mounted.status === 0 ? '' : `mount -t tmpfs refused (${mounted.stderr.trim()}) — needs root`,
      'ENOSPC test'
    )
  )
    return
  try {
    const src = path.join(root, 'big')
    mkdirSync(src)
    writeFileSync(path.join(src, 'random.bin'), randomBytes(3 * 1024 * 1024)) // incompressible, > 1 MiB
    const out = path.join(small, 'data.tar.zst')
    const err = await tarZstd(src, out).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(DiskFullError)
    expect((err as Error).message).toContain(`no space left on device in ${small}`)
    expect((err as Error).message).toMatch(/prune old backups/)
    expect(readdirSync(small)).toEqual([])

    const zerr = await zstdFile(path.join(src, 'random.bin'), path.join(small, 'r.zst')).catch(
      (e: unknown) => e
    )
    expect(zerr).toBeInstanceOf(DiskFullError)
    expect(readdirSync(small)).toEqual([])
  } finally {
    spawnSync('umount', [small])
  }
})
