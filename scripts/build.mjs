// Builds one ncc bundle per action (dist/<name>/index.js) plus the CLI (dist/cli/index.js).
//
// Heavy dependencies that only some paths use are not in index.js: each is bundled on its own, once, into
// dist/<name>/<dir>/index.js (with its assets and licenses), and index.js requires it from there on first
// use (the source requires it lazily, inside the function that needs it). A run that never touches Docker
// or GitHub never reads, compiles or evaluates them: cold start pays only for what the run uses.
import { createRequire } from 'node:module'
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readdirSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync
} from 'node:fs'
import path from 'node:path'
import ncc from '@vercel/ncc'

const root = path.dirname(path.dirname(new URL(import.meta.url).pathname))
// ncc looks for tsconfig.json from the entry point up to the working directory: build from the root, always.
process.chdir(root)

/** Loaded on demand: the module as the source requires it → the folder its bundle gets beside index.js. */
const LAZY = {
  // dockerode with docker-modem, ssh2, @grpc/grpc-js and protobufjs (and their .proto assets): ~1 MB
  // minified, needed only for `runtime: compose` (src/drivers/compose.ts).
  dockerode: 'dockerode',
  // Only for the actions that call GitHub, and only once they make a call (src/drivers/github.ts).
  '@octokit/rest': 'octokit'
}
const externals = Object.fromEntries(Object.entries(LAZY).map(([mod, dir]) => [mod, `./${dir}/index.js`]))

const entries = [['cli', 'src/cli/index.ts']]
const actionsDir = path.join(root, 'src/actions')
if (existsSync(actionsDir))
  for (const f of readdirSync(actionsDir).sort()) {
    const m = /^(.+)-action\.ts$/.exec(f)
    if (m) entries.push([m[1], `src/actions/${f}`])
  }
const only = process.argv.slice(2).filter(a => !a.startsWith('-'))

/** ncc's CLI flags: --minify --no-source-map-register --quiet --transpile-only --license licenses.txt */
const bundle = (file, options = {}) =>
  ncc(file, {
    minify: true,
    sourceMapRegister: false,
    quiet: true,
    transpileOnly: true,
    license: 'licenses.txt',
    ...options
  })

/** Writes a build as ncc's CLI does: index.js, then the assets and symlinks it relocated. */
function write(dir, { code, assets, symlinks }) {
  mkdirSync(dir, { recursive: true })
  writeFileSync(path.join(dir, 'index.js'), code)
  for (const [name, asset] of Object.entries(assets)) {
    const file = path.join(dir, name)
    mkdirSync(path.dirname(file), { recursive: true })
    writeFileSync(file, asset.source, { mode: asset.permissions })
  }
  for (const [name, target] of Object.entries(symlinks ?? {})) symlinkSync(target, path.join(dir, name))
}

// Each lazy bundle is built once, when the first entry point needs it.
const requireFromRoot = createRequire(path.join(root, 'package.json'))
const lazyBuilds = new Map()
const lazyBuild = mod => {
  if (!lazyBuilds.has(mod)) lazyBuilds.set(mod, bundle(requireFromRoot.resolve(mod)))
  return lazyBuilds.get(mod)
}

for (const [name, entry] of entries) {
  if (only.length && !only.includes(name)) continue
  // Build beside, then swap: a running test or demo never sees a missing bundle.
  const out = path.join(root, 'dist', name)
  const tmp = `${out}.building`
  rmSync(tmp, { recursive: true, force: true })
  const main = await bundle(path.join(root, entry), { externals })
  write(tmp, main)
  for (const [mod, request] of Object.entries(externals)) {
    // ncc emits an external as require("./<dir>/index.js"); an entry point that never reaches the module has none.
    if (!main.code.includes(`require(${JSON.stringify(request)})`)) continue
    write(path.join(tmp, LAZY[mod]), await lazyBuild(mod))
  }
  if (name === 'cli') chmodSync(path.join(tmp, 'index.js'), 0o755)
  rmSync(out, { recursive: true, force: true })
  renameSync(tmp, out)
  console.log(`built dist/${name}/index.js`)
}
