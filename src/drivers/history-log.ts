import {
  closeSync,
  constants,
  fstatSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readSync,
  writeSync
} from 'node:fs'
import path from 'node:path'

/**
 * Appends one line to the history log as one write(2) of the whole line on an O_APPEND descriptor. A write that
 * comes up short (a full disk) is undone — the file is cut back to its size before — and the error thrown, so the
 * log never holds half a line. A file that does not end in a newline (a half line left by an older version) gets
 * one first, so the new entry is never glued to it.
 */
export function appendHistoryLine(file: string, line: string): void {
  mkdirSync(path.dirname(file), { recursive: true })
  const fd = openSync(file, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT, 0o644)
  try {
    const before = fstatSync(fd).size
    const text = (before > 0 && !endsWithNewline(file, before) ? '\n' : '') + line.replace(/\n/g, ' ') + '\n'
    const buf = Buffer.from(text, 'utf8')
    let written = 0
    try {
      written = writeSync(fd, buf, 0, buf.length)
    } catch (e) {
      undo(fd, before)
      throw e
    }
    if (written !== buf.length) {
      undo(fd, before)
      const err = new Error(
        `no space left on device: only ${written} of ${buf.length} bytes of the history line fit in ${file}; the line was not written`
      ) as NodeJS.ErrnoException
      err.code = 'ENOSPC'
      throw err
    }
  } finally {
    closeSync(fd)
  }
}

function endsWithNewline(file: string, size: number): boolean {
  const fd = openSync(file, 'r')
  try {
    const b = Buffer.alloc(1)
    readSync(fd, b, 0, 1, size - 1)
    return b[0] === 0x0a
  } finally {
    closeSync(fd)
  }
}

function undo(fd: number, size: number): void {
  try {
    if (fstatSync(fd).size > size) ftruncateSync(fd, size)
  } catch {
    /* nothing more can be done; the caller reports the write error */
  }
}
