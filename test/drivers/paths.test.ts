import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { unusedFileName, unusedPath } from '../../src/drivers/paths'

test('unusedPath / unusedFileName: the name itself, else -2, -3, … (before the extension for files)', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'backout-paths-'))
  try {
    const aside = path.join(dir, 'data.replaced-20261123-101010')
    expect(unusedPath(aside)).toBe(aside)
    mkdirSync(aside)
    expect(unusedPath(aside)).toBe(`${aside}-2`)
    mkdirSync(`${aside}-2`)
    expect(unusedPath(aside)).toBe(`${aside}-3`)
    const kept = path.join(dir, 'app_corrupted_20261123_101010.db')
    writeFileSync(kept, 'x')
    expect(unusedFileName(kept)).toBe(path.join(dir, 'app_corrupted_20261123_101010-2.db'))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
