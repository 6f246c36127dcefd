import { existsSync } from 'node:fs'
import path from 'node:path'

/**
 * `file`, or the same name with -2, -3, … before its extension: the first that does not exist. Names that carry a
 * time to the second (a directory moved aside, a file kept) meet themselves when a run is resumed within that second.
 */
export function unusedPath(file: string, ext = ''): string {
  const base = ext && file.endsWith(ext) ? file.slice(0, -ext.length) : file
  for (let i = 1; ; i++) {
    const candidate = i === 1 ? file : `${base}-${i}${ext}`
    if (!existsSync(candidate)) return candidate
  }
}

/** unusedPath for a file whose extension (as path.extname reads it) stays last. */
export function unusedFileName(file: string): string {
  return unusedPath(file, path.extname(file))
}
