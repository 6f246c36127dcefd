// Builds one ncc bundle per action (dist/<name>/index.js) plus the CLI (dist/cli/index.js).
import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync, rmSync, chmodSync, renameSync } from 'node:fs'
import path from 'node:path'

const root = path.dirname(path.dirname(new URL(import.meta.url).pathname))
const entries = [['cli', 'src/cli/index.ts']]
const actionsDir = path.join(root, 'src/actions')
if (existsSync(actionsDir))
  for (const f of readdirSync(actionsDir).sort()) {
    const m = /^(.+)-action\.ts$/.exec(f)
    if (m) entries.push([m[1], `src/actions/${f}`])
  }
const only = process.argv.slice(2).filter(a => !a.startsWith('-'))
const ncc = path.join(root, 'node_modules/@vercel/ncc/dist/ncc/cli.js')
for (const [name, entry] of entries) {
  if (only.length && !only.includes(name)) continue
  // Build beside, then swap: a running test or demo never sees a missing bundle.
  const out = path.join(root, 'dist', name)
  const tmp = `${out}.building`
  rmSync(tmp, { recursive: true, force: true })
  execFileSync(
    process.execPath,
    [
      ncc,
      'build',
      entry,
      '-o',
      tmp,
      '--minify',
      '--no-source-map-register',
      '--quiet',
      '--transpile-only',
      '--license',
      'licenses.txt'
    ],
    {
      cwd: root,
      stdio: 'inherit'
    }
  )
  if (name === 'cli') chmodSync(path.join(tmp, 'index.js'), 0o755)
  rmSync(out, { recursive: true, force: true })
  renameSync(tmp, out)
  console.log(`built dist/${name}/index.js`)
}
