// Exit 0 when node_modules holds exactly what package-lock.json pins (name → version, from npm's own record
// node_modules/.package-lock.json), 1 otherwise. Compared by content, not by file times: a fresh clone's
// lock is always "newer" than an install made a minute before, and a rewritten lock is what we avoid.
import { readFileSync } from 'node:fs'

const read = file => {
  try {
    return JSON.parse(readFileSync(file, 'utf8')).packages ?? {}
  } catch {
    return undefined
  }
}
const wanted = read('package-lock.json')
const installed = read('node_modules/.package-lock.json')
if (!wanted || !installed) process.exit(1)
const pins = pkgs =>
  Object.entries(pkgs)
    .filter(([name, p]) => name !== '' && !p.link && !p.optional)
    .map(([name, p]) => `${name}@${p.version}`)
    .sort()
const have = new Set(pins(installed))
const missing = pins(wanted).filter(p => !have.has(p))
if (missing.length) {
  console.error(
    `backout setup: node_modules lacks ${missing.length} locked packages (${missing.slice(0, 3).join(', ')}…)`
  )
  process.exit(1)
}
