import type { Command } from 'commander'
import { EXIT } from '../../core/errors'
import type { Logger } from '../../core/logger'
import { configPath, loadConfig } from '../../drivers/config-file'
import { doctor, doctorText } from '../../engine/doctor'
import { createService } from '../../engine/service'

export function register(
  program: Command,
  log: Logger,
  print: (human: string, data: unknown) => void,
  setExit: (code: number) => void
): void {
  program
    .command('doctor')
    .description(
      'check the host and the config before the day they are needed: nginx test and reload rights, pg_dump ' +
        'vs server versions, WAL archiving, zstd, Docker and compose, alembic, disk, state.dir, the seal key, ' +
        'the newest backup, the runner — each failure with its fix; exit 1 when one fails'
    )
    .option('--drill', 'also restore the newest backup into scratch (backout verify)')
    .option('--runner-dir <dir>', "the self-hosted runner's directory, to check it can run node24 actions")
    .action(async (o: { drill?: boolean; runnerDir?: string }, cmd: Command) => {
      const config = loadConfig(configPath(cmd.parent?.opts<{ config?: string }>().config))
      const checks = await doctor(createService(config, log), { drill: o.drill, runnerDir: o.runnerDir })
      const failed = checks.some(c => c.status === 'fail')
      print(doctorText(checks), { ok: !failed, checks })
      if (failed) setExit(EXIT.failed)
    })
}
