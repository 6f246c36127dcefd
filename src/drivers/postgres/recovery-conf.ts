import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'

/**
 * The recovery settings a physical restore puts in postgresql.auto.conf (restore_command, recovery_target_*), and
 * their removal once the recovery is proven: left there, they would apply to the next archive recovery someone
 * starts by hand (a standby.signal, a recovery.signal) and mislead whoever reads the configuration.
 */

export const RECOVERY_KEYS =
  /^\s*(restore_command|recovery_target\w*|recovery_end_command|archive_cleanup_command|primary_conninfo)\s*=/

const MARK = '# backout physical restore of '

/** postgresql.auto.conf's lines without any recovery setting (or backout's marker). */
function withoutRecovery(text: string): string {
  return text
    .split('\n')
    .filter(l => !RECOVERY_KEYS.test(l) && !l.startsWith(MARK))
    .join('\n')
    .trimEnd()
}

/** Writes the recovery settings into `autoConf` (postgresql.auto.conf), replacing any there. */
export function writeRecoverySettings(
  autoConf: string,
  label: string,
  settings: Record<string, string>
): void {
  const kept = existsSync(autoConf) ? withoutRecovery(readFileSync(autoConf, 'utf8')) : ''
  writeFileSync(
    autoConf,
    `${kept}\n${MARK}${label}\n` +
      Object.entries(settings)
        .map(([k, v]) => `${k} = ${v}`)
        .join('\n') +
      '\n'
  )
}

/** Removes the recovery settings from the data directory's postgresql.auto.conf. True when there were any. */
export function removeRecoverySettings(dataDir: string): boolean {
  const file = path.join(dataDir, 'postgresql.auto.conf')
  if (!existsSync(file)) return false
  const text = readFileSync(file, 'utf8')
  const kept = withoutRecovery(text) + '\n'
  if (kept === text) return false
  writeFileSync(file, kept) // rewritten in place: owner and mode stay
  return true
}
