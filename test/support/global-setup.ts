import { execFileSync } from 'node:child_process'
import path from 'node:path'

/**
 * Before any test: the bundles are rebuilt when a source file is newer than them, so a plain `npx jest` never tests
 * an old dist/ (the CLI and action tests run the bundles, as users do).
 */
export default function globalSetup(): void {
  const root = path.resolve(__dirname, '../..')
  execFileSync('bash', [path.join(root, 'scripts/ensure-built.sh')], { cwd: root, stdio: 'inherit' })
}
